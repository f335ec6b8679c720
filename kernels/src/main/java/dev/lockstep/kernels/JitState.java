package dev.lockstep.kernels;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.lang.classfile.ClassFile;
import java.lang.classfile.ClassModel;
import java.lang.classfile.CodeElement;
import java.lang.classfile.CodeModel;
import java.lang.classfile.Label;
import java.lang.classfile.MethodModel;
import java.lang.classfile.instruction.BranchInstruction;
import java.lang.classfile.instruction.InvokeInstruction;
import java.lang.classfile.instruction.LabelTarget;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * What the JIT has made of the kernels, in its own words: the code cache's list of compiled methods
 * ({@code jcmd PID Compiler.codelist}, read in-process through the {@code DiagnosticCommand} MBean), one entry per
 * nmethod with its compile id, tier (1-3 C1, 4 C2) and state (0 in use, 1 not entrant).
 *
 * <p>The kernel methods are read from the kernel classes' bytecode: every method of {@link PanamaKernels} and
 * {@link Nvfp4VectorKernel} that calls the Vector API or holds a loop, i.e. where a forward spends its time, and
 * that is larger than C2's {@code FreqInlineSize} (325 bytes of bytecode), so that every call runs the method's own
 * compiled code. A smaller one (a wrapper such as {@code axpy}, a dispatcher such as {@code attentionScores}) is
 * inlined into its callers' C2 code, after which its own nmethod may stay at tier 3 forever without running: its
 * tier in the code list says nothing about what runs (the Vector API bodies are kept above the limit for that
 * reason: VectorCodeShapeTest).
 * A method runs C2 code when it has an in-use tier-4 nmethod and no in-use nmethod of a lower tier compiled after
 * it. The code list does not mark on-stack-replacement (OSR) compiles; an OSR tier-4 compile of a loop is followed
 * by the method's own within calls, so a check repeated after more calls settles it (the tests read the JIT log,
 * which does mark OSR).
 */
public final class JitState {
    /** One nmethod of the code list. */
    public record Nmethod(int compileId, int tier, int state, String method) {
        public boolean inUse() {
            return state == 0;
        }
    }

    /** The code list at one moment, by method ({@code pkg.Class.name(descriptor)}). */
    public record Snapshot(Map<String, List<Nmethod>> byMethod) {
        /** The method's newest in-use nmethod is C2's (tier 4). */
        public boolean runsC2(String method) {
            Nmethod newest = null;
            for (Nmethod n : byMethod.getOrDefault(method, List.of())) {
                if (n.inUse() && (newest == null || n.compileId() > newest.compileId())) {
                    newest = n;
                }
            }
            return newest != null && newest.tier() == 4;
        }

        /** The largest compile id among the method's nmethods (in use or not), or -1 when it was never compiled. */
        public int newestCompileId(String method) {
            int id = -1;
            for (Nmethod n : byMethod.getOrDefault(method, List.of())) {
                id = Math.max(id, n.compileId());
            }
            return id;
        }

        /** The method has been compiled at least once (at any tier): it has run often enough to be profiled. */
        public boolean compiled(String method) {
            return byMethod.containsKey(method);
        }
    }

    private JitState() {
    }

    /** C2's default {@code FreqInlineSize}: a larger method is never inlined into a caller. */
    public static final int FREQ_INLINE_SIZE = 325;
    private static final Set<String> KERNEL_CLASSES = Set.of("PanamaKernels", "Nvfp4VectorKernel");
    private static volatile Set<String> kernelMethods;

    /**
     * The code list now, or empty when this JVM does not offer it (no {@code jdk.management} module, or the MBean
     * refused): then nothing can be said about the JIT, and callers say so.
     */
    public static Optional<Snapshot> snapshot() {
        String list;
        try {
            var server = java.lang.management.ManagementFactory.getPlatformMBeanServer();
            var name = new javax.management.ObjectName("com.sun.management:type=DiagnosticCommand");
            list = (String) server.invoke(name, "compilerCodelist", new Object[]{null}, new String[]{String[].class.getName()});
        } catch (javax.management.JMException | RuntimeException e) {
            return Optional.empty();
        }
        return Optional.of(parse(list));
    }

    /** Parses {@code Compiler.codelist}'s lines: {@code id tier state pkg.Class.name(descriptor)ret [addresses]}. */
    static Snapshot parse(String codelist) {
        Map<String, List<Nmethod>> byMethod = new HashMap<>();
        for (String line : codelist.split("\n")) {
            String[] f = line.trim().split(" ", 4);
            if (f.length < 4 || !f[3].startsWith("dev.lockstep.")) {
                continue;
            }
            try {
                int id = Integer.parseInt(f[0]), tier = Integer.parseInt(f[1]), state = Integer.parseInt(f[2]);
                String rest = f[3];
                int space = rest.indexOf(" [");
                String method = space < 0 ? rest : rest.substring(0, space);
                byMethod.computeIfAbsent(method, k -> new ArrayList<>()).add(new Nmethod(id, tier, state, method));
            } catch (NumberFormatException e) {
                // a line of another shape (a JDK that changed the format): not ours to guess
            }
        }
        return new Snapshot(byMethod);
    }

    /**
     * Every kernel method (as the code list names them: {@code dev.lockstep.kernels.Class.name(descriptor)}): the
     * methods of the kernel classes that call the Vector API or hold a loop and are never inlined. Read once from
     * their bytecode.
     */
    public static Set<String> kernelMethods() {
        Set<String> s = kernelMethods;
        if (s == null) {
            Set<String> found = new LinkedHashSet<>();
            for (String cls : KERNEL_CLASSES.stream().sorted().toList()) {
                found.addAll(hotMethods(cls));
            }
            kernelMethods = s = Set.copyOf(found);
        }
        return s;
    }

    private static List<String> hotMethods(String simpleName) {
        byte[] bytes;
        try (InputStream in = JitState.class.getResourceAsStream(simpleName + ".class")) {
            if (in == null) {
                throw new IllegalStateException("class file of " + simpleName + " not found");
            }
            bytes = in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        ClassModel model = ClassFile.of().parse(bytes);
        String owner = model.thisClass().asInternalName().replace('/', '.');
        List<String> out = new ArrayList<>();
        for (MethodModel m : model.methods()) {
            String name = m.methodName().stringValue();
            CodeModel code = m.code().orElse(null);
            if (code == null || name.equals("<clinit>") || name.equals("<init>")) {
                continue;
            }
            boolean vector = false, loop = false;
            Set<Label> seen = new HashSet<>();
            for (CodeElement e : code) {
                if (e instanceof LabelTarget t) {
                    seen.add(t.label());
                } else if (e instanceof BranchInstruction b && seen.contains(b.target())) {
                    loop = true; // a backward branch
                } else if (e instanceof InvokeInstruction i && i.owner().asInternalName().startsWith("jdk/incubator/vector/")) {
                    vector = true;
                }
            }
            int length = ((java.lang.classfile.attribute.CodeAttribute) code).codeLength();
            if ((vector || loop) && length > FREQ_INLINE_SIZE) {
                out.add(owner + "." + name + m.methodTypeSymbol().descriptorString());
            }
        }
        return out;
    }
}
