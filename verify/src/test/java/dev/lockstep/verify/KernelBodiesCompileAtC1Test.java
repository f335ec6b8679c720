package dev.lockstep.verify;

import dev.lockstep.kernels.DenseFormat;
import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.PanamaKernels;
import dev.lockstep.kernels.WeightFormat;
import dev.lockstep.kernels.WeightLayout;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.KvBlockDescriptor;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Every Vector API kernel body compiles at C1's tier 3. A body too large for C1 fails with "out of virtual
 * registers" and may leave the JVM on a tier-2 compile that is never replaced by C2 and runs the Vector API's
 * allocating Java fallback for good: a four-tile two-token bf16 body measured 370x slower in JMH, an eight-tile
 * NVFP4 decode body 190 MB of garbage per decode step. Whether a given JVM hits it depends on compile timing, so
 * the zero-allocation and speed checks would catch it only sometimes. Here a child JVM limited to C1
 * ({@code -XX:TieredStopAtLevel=3}, compiling in the foreground) runs each kernel body through each of its paths
 * (token counts, query-head pairs, block counts), one JVM per group of bodies, and its compile log must show no
 * kernel method skipped.
 */
class KernelBodiesCompileAtC1Test {

    @ParameterizedTest(name = "{0}")
    @CsvSource({
            "bf16, PanamaKernels::matvecFourTiles PanamaKernels::matmulEightTokens PanamaKernels::matmulTwoTokens",
            "f32, PanamaKernels::denseF32FourTiles",
            "f16, PanamaKernels::denseF16FourTiles",
            "nvfp4, Nvfp4VectorKernel::PREFILL Nvfp4VectorKernel::DECODE Nvfp4VectorKernel::PAIR",
            "attention, PanamaKernels::scoresKernel PanamaKernels::valuesKernel",
            "rows, PanamaKernels::rowKernel"})
    void kernelBodiesCompileAtTierThree(String group, String bodies) throws Exception {
        KernelMatrixTest.assumeWidthSupported();
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> cmd = new ArrayList<>(List.of(java, "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "-XX:TieredStopAtLevel=3", "-Xbatch", "-XX:+PrintCompilation",
                // compile after a few dozen calls: C1 code runs the Vector API's Java fallback, so calls are slow
                "-XX:Tier3InvocationThreshold=20", "-XX:Tier3MinInvocationThreshold=10", "-XX:Tier3CompileThreshold=50",
                "-XX:Tier3BackEdgeThreshold=5000"));
        String bits = System.getProperty("lockstep.vector.bits");
        if (bits != null) { // the kernel matrix executions run this test at each width
            cmd.add("-Dlockstep.vector.bits=" + bits);
        }
        // one fresh JVM per group: the fewer vector classes a JVM has loaded, the more C1 inlines into a body
        // (class hierarchy analysis sees one implementation), so a lone group is the worst case for its bodies
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Workout.class.getName(), group));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "child JVM timed out");
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("workout done"), out);
        List<String> skipped = out.lines()
                .filter(l -> l.contains("COMPILE SKIPPED") && l.contains("dev.lockstep.kernels."))
                .filter(l -> !l.contains("concurrent class loading")) // transient: the compile is retried
                .toList();
        if (!skipped.isEmpty()) {
            fail("kernel bodies C1 could not compile (split or shrink them; see DESIGN.md, NVFP4 decisions):\n"
                    + String.join("\n", skipped));
        }
        // the log covers the bodies: a renamed or bypassed body must not make this test pass vacuously
        for (String body : bodies.split(" ")) {
            boolean wide = new PanamaKernels().tileRows() >= 16; // 16 lanes have their own NVFP4 bodies
            body = body.replace("DECODE", wide ? "fourTilesWide" : "fourTiles").replace("PREFILL", wide ? "fourTokensWide" : "fourTokens")
                    .replace("PAIR", wide ? "twoTokensWide" : "fourTiles"); // two tokens: their own body at 16 lanes only
            assertTrue(out.contains("dev.lockstep.kernels." + body + " "), body + " was never compiled:\n" + out);
        }
    }

    /** Runs every kernel body in its paths often enough for C1 to compile it (child JVM main). */
    public static final class Workout {
        public static void main(String[] args) {
            String group = args[0];
            Kernels k = new PanamaKernels();
            int t = k.tileRows();
            try (Arena arena = Arena.ofConfined()) {
                int rows = 4 * t + 3, cols = 64;
                WeightMatrix m = switch (group) {
                    case "bf16", "f32", "f16" -> {
                        DenseFormat f = group.equals("bf16") ? WeightFormat.BF16 : group.equals("f32") ? WeightFormat.F32 : WeightFormat.F16;
                        yield KernelMatrixTest.matrix(f, rows, cols, 7, arena, 0)
                                .packTiled(t, arena.allocate(WeightMatrix.byteSize(WeightLayout.TILED, f, rows, cols, t), 64));
                    }
                    case "nvfp4" -> Nvfp4KernelTest.pack(Nvfp4KernelTest.random(rows, cols, 3), rows, cols, t, arena);
                    default -> null;
                };
                float[] x = KernelMatrixTest.random(9 * cols, 5), out = new float[9 * rows];
                int heads = 3, headDim = 64, block = KvBlockDescriptor.BLOCK_TOKENS;
                MemorySegment keys = arena.allocate(KvBlockDescriptor.blockBytes(1, headDim), 64);
                MemorySegment values = arena.allocate(KvBlockDescriptor.blockBytes(1, headDim), 64);
                MemorySegment[] blocks = {keys, keys, keys, keys, keys};
                long[] offsets = new long[5];
                float[] q = KernelMatrixTest.random(heads * headDim, 9), scores = new float[heads * 5 * block];
                float[] context = new float[heads * headDim], row = KernelMatrixTest.random(256, 11), norm = new float[256];
                for (int i = 0; i < 100; i++) {
                    if (m != null) {
                        for (int tokens : new int[]{1, 2, 3, 4, 8}) {
                            k.matmul(m, x, 0, cols, tokens, out, 0, rows, 0, rows);
                        }
                    } else if (group.equals("attention")) {
                        k.attentionScores(q, 0, heads, headDim, blocks, offsets, 5, scores, 0, 5 * block);
                        k.attentionValues(scores, 0, 5 * block, heads, block, values, 0, (long) headDim * Float.BYTES, context, 0, headDim);
                    } else {
                        k.rmsNorm(row, 0, row, 1e-6f, norm, 0, 256);
                        k.softmax(norm, 0, 256);
                        k.siluMul(row, 0, row, 0, norm, 0, 256);
                        k.axpy(0.5f, row, 0, norm, 0, 256);
                    }
                }
            }
            System.out.println("workout done");
        }
    }
}
