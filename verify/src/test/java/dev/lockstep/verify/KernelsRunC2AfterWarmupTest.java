package dev.lockstep.verify;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.kernels.JitState;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LoadOptions;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.kv.KvCache;
import dev.lockstep.moe.qwen3.Qwen3MoeSynthesizer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Steady speed by design (DESIGN.md, "Steady speed"): after the engine's load, which ends with the kernel warm-up,
 * every kernel method that a few decode steps and a prefill then ran runs C2 code. Each case is a fresh JVM (a JVM
 * that ran other tests has compiled everything long ago) on the bundled model (bf16) or a synthetic one quantized
 * to NVFP4 at load (NVFP4 experts and lm_head, bf16 routers), at 1 and 2 threads. The JIT answers for itself: the
 * child prints the code list ({@code Compiler.codelist}: compile id, tier, state per nmethod) after the steps, and
 * its JIT log ({@code -Xlog:jit+compilation}) says which compile ids are OSR compiles, which do not count. A kernel
 * method passes with an in-use tier-4 nmethod that is not OSR. Without the warm-up (the child's
 * {@code withKernelWarmup(false)}), the same steps leave the bodies on C1 code and this test fails.
 */
class KernelsRunC2AfterWarmupTest {
    @TempDir
    static Path tmp;
    static Path synth;
    /** The synthetic model takes the bundled model's tokenizer, so its vocabulary. */
    static final int BUNDLED_VOCAB = 4096;

    @BeforeAll
    static void writeSynth() {
        synth = tmp.resolve("synth");
        // real-ish widths so every body's loops run their vector paths: 2 layers, hidden 512, 16 experts of 256
        Qwen3MoeSynthesizer.write(new Qwen3MoeSynthesizer.Shape(2, 512, 16, 4, 256, 8, 2, 64, BUNDLED_VOCAB), 1, Golden.bundledModel(), synth,
                dev.lockstep.memory.Progress.NONE);
    }

    @ParameterizedTest(name = "{0}, {1} threads")
    @CsvSource({"bundled, 1", "bundled, 2", "synth-nvfp4, 1", "synth-nvfp4, 2"})
    void everyKernelMethodTheStepsRanRunsC2Code(String model, int threads) throws Exception {
        KernelMatrixTest.assumeWidthSupported();
        Path dir = model.equals("bundled") ? Golden.bundledModel() : synth;
        Path log = tmp.resolve("jit-" + model + "-" + threads + ".log");
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> cmd = new ArrayList<>(List.of(java, "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "-XX:+UseSerialGC", "-Xlog:jit+compilation=debug:file=" + log));
        String bits = System.getProperty("lockstep.vector.bits");
        if (bits != null) {
            cmd.add("-Dlockstep.vector.bits=" + bits);
        }
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Child.class.getName(), dir.toString(), String.valueOf(threads),
                String.valueOf(!model.equals("bundled"))));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(180, TimeUnit.SECONDS), "child JVM timed out");
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("steps done"), out);

        Set<Integer> osr = osrCompileIds(Files.readString(log));
        Map<String, List<int[]>> byMethod = new HashMap<>(); // method -> {id, tier, state}
        Matcher m = Pattern.compile("^nm (\\d+) (\\d) (\\d) (\\S+)$", Pattern.MULTILINE).matcher(out);
        while (m.find()) {
            byMethod.computeIfAbsent(m.group(4), k -> new ArrayList<>())
                    .add(new int[]{Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)), Integer.parseInt(m.group(3))});
        }
        List<String> notC2 = new ArrayList<>();
        byMethod.forEach((method, nms) -> {
            boolean c2 = nms.stream().anyMatch(n -> n[1] == 4 && n[2] == 0 && !osr.contains(n[0]));
            if (!c2) {
                notC2.add(method + " " + nms.stream().map(n -> "id " + n[0] + " tier " + n[1] + (n[2] == 0 ? " in use" : " not entrant")
                        + (osr.contains(n[0]) ? " OSR" : "")).toList());
            }
        });
        assertTrue(notC2.isEmpty(), "kernel methods the steps ran that do not run C2 code after the warm-up:\n"
                + String.join("\n", notC2) + "\n" + out);
        // not vacuous: the bodies of this model's decode step are among those checked
        boolean wide = new dev.lockstep.kernels.PanamaKernels().tileRows() >= 16;
        List<String> expected = new ArrayList<>(List.of("PanamaKernels.rowKernel", "PanamaKernels.scoresKernel", "PanamaKernels.valuesKernel",
                "PanamaKernels.matvecFourTiles"));
        if (!model.equals("bundled")) {
            expected.add(wide ? "Nvfp4VectorKernel.fourTilesWide" : "Nvfp4VectorKernel.fourTiles");
            expected.add(wide ? "Nvfp4VectorKernel.fourTokensWide" : "Nvfp4VectorKernel.fourTokens");
        }
        for (String body : expected) {
            assertTrue(byMethod.keySet().stream().anyMatch(k -> k.startsWith("dev.lockstep.kernels." + body + "(")),
                    body + " was not among the compiled kernel methods: " + byMethod.keySet());
        }
    }

    /** Compile ids of OSR compiles in a {@code -Xlog:jit+compilation=debug} log (the {@code %} flag). */
    static Set<Integer> osrCompileIds(String log) {
        Set<Integer> ids = new HashSet<>();
        Matcher m = Pattern.compile("^\\[[^]]*]\\s+(\\d+) %", Pattern.MULTILINE).matcher(log);
        while (m.find()) {
            ids.add(Integer.parseInt(m.group(1)));
        }
        return ids;
    }

    /** Loads the engine (its load runs the kernel warm-up), runs a prefill and decode steps, prints the kernel methods' nmethods. */
    public static final class Child {
        public static void main(String[] args) {
            Path dir = Path.of(args[0]);
            int threads = Integer.parseInt(args[1]);
            boolean nvfp4 = Boolean.parseBoolean(args[2]);
            LoadOptions load = new LoadOptions(nvfp4, nvfp4, List.of());
            EngineOptions options = new EngineOptions(threads, EngineOptions.KernelChoice.PROVIDER, load)
                    .withKernelWarmup(!Boolean.getBoolean("lockstep.test.noWarmup"));
            try (Engine engine = Engine.load(dir, options)) {
                System.out.println(engine.kernelWarmup().map(r -> r.describe()).orElse("warm-up off"));
                CausalLm model = engine.model();
                float[] logits = new float[model.vocabSize()];
                int[] prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9};
                try (KvCache kv = model.newKvCache(64)) {
                    ForwardState state = model.newState(prompt.length);
                    model.forward(prompt, 0, prompt.length, kv, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                    int[] one = {10};
                    for (int i = 0; i < 16; i++) {
                        model.forward(one, 0, 1, kv, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                    }
                }
                JitState.Snapshot s = JitState.snapshot().orElseThrow(() -> new AssertionError("no code list in this JVM"));
                for (String method : JitState.kernelMethods()) {
                    for (JitState.Nmethod n : s.byMethod().getOrDefault(method, List.of())) {
                        System.out.println("nm " + n.compileId() + " " + n.tier() + " " + n.state() + " " + method);
                    }
                }
                System.out.println("steps done");
            }
        }
    }
}
