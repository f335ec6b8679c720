package dev.lockstep.moe;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Predicate;
import java.util.regex.Pattern;

/**
 * Which Linear weights NVIDIA ModelOpt quantizes to NVFP4, and which share a {@code weight_scale_2}: the
 * naming rules behind {@code lockstep quantize} and {@code --quant nvfp4} (one place, so both agree).
 * <ul>
 *   <li>Quantized: every 2-D {@code <module>.weight} except embeddings ({@code *embed_tokens*}), {@code lm_head}
 *       (unless asked), routers ({@code *.mlp.gate}, {@code *router*}, {@code *block_sparse_moe.gate},
 *       {@code *shared_expert_gate*}), norms, MLA's {@code kv_b_proj} (its rows are rearranged at load into the
 *       absorbed matrices, which need its dense values; it is small), and modules matching an exclude pattern.</li>
 *   <li>Shared input, shared {@code weight_scale_2} (amax over the group): {@code q_proj/k_proj/v_proj} of one
 *       attention block; {@code gate_proj/up_proj} (and Mixtral's {@code w1/w3}) of one MLP or expert.</li>
 * </ul>
 * Patterns are module names with {@code *} wildcards, matched as prefixes the way ModelOpt writes its
 * {@code exclude_modules} ({@code model.layers.3.mlp*}); a pattern without {@code *} matches that module and
 * everything under it.
 */
public final class Nvfp4Recipe {
    private static final List<String> SHARED_INPUT_GROUPS = List.of("q_proj,k_proj,v_proj", "gate_proj,up_proj", "w1,w3");

    private final boolean quantizeLmHead;
    private final List<Pattern> exclude;
    private final List<String> excludeText;

    public Nvfp4Recipe(boolean quantizeLmHead, List<String> exclude) {
        this.quantizeLmHead = quantizeLmHead;
        this.excludeText = List.copyOf(exclude);
        this.exclude = exclude.stream().map(Nvfp4Recipe::compile).toList();
    }

    private static Pattern compile(String glob) {
        if (glob.isBlank()) {
            throw new IllegalArgumentException("an exclude pattern is empty");
        }
        StringBuilder re = new StringBuilder();
        for (String part : glob.split("\\*", -1)) {
            if (!re.isEmpty()) {
                re.append(".*");
            }
            re.append(Pattern.quote(part));
        }
        return Pattern.compile(re + "(\\..*)?");
    }

    /** Whether module {@code module} matches {@code glob} (see the class comment). */
    public static boolean matches(String glob, String module) {
        return compile(glob).matcher(module).matches();
    }

    /** The module a weight tensor belongs to ({@code x.weight} → {@code x}), or null for other tensors. */
    public static String module(String tensor) {
        return tensor.endsWith(".weight") ? tensor.substring(0, tensor.length() - ".weight".length()) : null;
    }

    /** Whether the 2-D tensor {@code tensor} is quantized by this recipe. */
    public boolean quantizes(String tensor) {
        String m = module(tensor);
        if (m == null || m.contains("embed_tokens") || m.contains("norm") || m.endsWith(".mlp.gate") || m.contains("router")
                || m.endsWith("block_sparse_moe.gate") || m.contains("shared_expert_gate") || m.endsWith("kv_b_proj")) {
            return false;
        }
        if ((m.equals("lm_head") || m.endsWith(".lm_head")) && !quantizeLmHead) {
            return false;
        }
        for (Pattern p : exclude) {
            if (p.matcher(m).matches()) {
                return false;
            }
        }
        return true;
    }

    /**
     * Whether the experts of the fused 3-D tensor {@code tensor} (Granite's {@code input_linear.weight}, gpt-oss's
     * {@code gate_up_proj}) are quantized: always, unless an exclude pattern names the module.
     */
    public boolean quantizesExpert(String tensor) {
        String m = tensor.endsWith(".weight") ? module(tensor) : tensor;
        for (Pattern p : exclude) {
            if (p.matcher(m).matches()) {
                return false;
            }
        }
        return true;
    }

    /**
     * The weight tensors that share {@code tensor}'s input and so its {@code weight_scale_2}, {@code tensor}
     * included, in a fixed order; {@code exists} filters to the tensors the checkpoint has.
     */
    public static List<String> sharedInputGroup(String tensor, Predicate<String> exists) {
        String m = module(tensor);
        int dot = m == null ? -1 : m.lastIndexOf('.');
        if (dot < 0) {
            return List.of(tensor);
        }
        String prefix = m.substring(0, dot + 1), leaf = m.substring(dot + 1);
        for (String group : SHARED_INPUT_GROUPS) {
            List<String> members = List.of(group.split(","));
            if (members.contains(leaf)) {
                List<String> out = new ArrayList<>();
                for (String member : members) {
                    String name = prefix + member + ".weight";
                    if (name.equals(tensor) || exists.test(name)) {
                        out.add(name);
                    }
                }
                return out;
            }
        }
        return List.of(tensor);
    }

    /** The modules this recipe leaves unquantized by name (for {@code exclude_modules}): lm_head and the patterns. */
    public List<String> excludeModules() {
        List<String> out = new ArrayList<>(excludeText);
        if (!quantizeLmHead) {
            out.add("lm_head");
        }
        return out;
    }
}
