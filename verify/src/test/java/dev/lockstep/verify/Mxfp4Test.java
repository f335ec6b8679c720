package dev.lockstep.verify;

import dev.lockstep.kernels.E2M1;
import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.Nvfp4Format;
import dev.lockstep.kernels.PanamaKernels;
import dev.lockstep.kernels.ScalarKernels;
import dev.lockstep.kernels.WeightFormat;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.CheckpointException;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ModelFamilies;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * MXFP4 ({@link WeightFormat#MXFP4}): the Vector API kernel against the scalar reference and the definition written
 * out here from the checkpoint bytes (per 16 columns two fma chains of E2M1 x activation, their sum into one fma with
 * the 32-block's E8M0 scale 2^(e-127)), E8M0 extremes included (2^-127, 2^126); the gpt-oss MXFP4 twin
 * ({@code tiny/gpt_oss-mxfp4}, made independently of the engine) gives the logits of its dense twin; a NaN scale is a
 * load error naming the element. Runs at 128, 256 and 512 bits with the kernel matrix (verify/pom.xml).
 */
class Mxfp4Test {
    static final Kernels SCALAR = new ScalarKernels();
    static final Kernels SIMD = new PanamaKernels();

    @BeforeAll
    static void widthSupported() {
        KernelMatrixTest.assumeWidthSupported();
    }

    static float definition(byte[] blocks, byte[] scales, int cols, int row, float[] x, int xOff) {
        float acc = 0f;
        for (int b = 0; b < cols / 16; b++) {
            float[] half = new float[2];
            for (int k = b * 16; k < b * 16 + 16; k++) {
                int code = (blocks[(row * cols + k) / 2] >> 4 * (k % 2)) & 0xf;
                half[(k % 16) / 8] = Math.fma(E2M1.toFloat(code), x[xOff + k], half[(k % 16) / 8]);
            }
            float scale = Math.scalb(1f, (scales[row * (cols / 32) + b / 2] & 0xff) - 127);
            acc = Math.fma(scale, half[0] + half[1], acc);
        }
        return acc;
    }

    @ParameterizedTest(name = "cols={0} tokens={1}")
    @CsvSource({"32, 1", "64, 2", "96, 3", "288, 4", "1056, 5", "2880, 1", "2880, 9"})
    void vectorScalarAndDefinitionAgreeBitForBit(int cols, int tokens) {
        int t = SIMD.tileRows();
        int rows = 3 * t + 5;
        SplittableRandom r = new SplittableRandom(cols * 31L + tokens);
        byte[] blocks = new byte[rows * cols / 2];
        byte[] scales = new byte[rows * cols / 32];
        r.nextBytes(blocks);
        // one matrix's scales span at most 2^30 (a wider span flushes its smallest blocks: tested below); the low and the
        // high end of E8M0 in separate matrices: 2^-127 .. 2^-97, and 2^96 .. 2^126
        int lo = cols % 64 == 0 ? 0 : cols % 96 == 0 ? 223 : 100;
        for (int i = 0; i < scales.length; i++) {
            scales[i] = (byte) (lo + r.nextInt(31));
        }
        float[] x = KernelMatrixTest.random(2 + tokens * cols, 5);
        for (int i = 0; i < x.length; i++) {
            x[i] *= lo == 223 ? 1e-30f : 1f; // keeps 2^126-scaled blocks finite
        }
        try (Arena arena = Arena.ofConfined()) {
            for (Kernels k : new Kernels[]{SCALAR, SIMD}) {
                WeightMatrix m = Nvfp4Format.mxfp4Tiled("w", rows, cols, MemorySegment.ofArray(scales), k.tileRows(),
                        arena.allocate(WeightFormat.MXFP4.tiledBytes(rows, cols, k.tileRows()), 64));
                Nvfp4Format.fillMxfp4(m, MemorySegment.ofArray(blocks), MemorySegment.ofArray(scales));
                int row = rows - 2, col = cols - 3;
                int code = (blocks[(row * cols + col) / 2] >> 4 * (col % 2)) & 0xf;
                assertEquals(E2M1.toFloat(code) * Math.scalb(1f, (scales[row * (cols / 32) + col / 32] & 0xff) - 127), m.get(row, col));
                float[] out = new float[tokens * rows];
                k.matmul(m, x, 2, cols, tokens, out, 0, rows, 1, rows);
                for (int tok = 0; tok < tokens; tok++) {
                    for (int rr = 1; rr < rows; rr++) {
                        float expected = definition(blocks, scales, cols, rr, x, 2 + tok * cols);
                        assertEquals(Float.floatToIntBits(expected), Float.floatToIntBits(out[tok * rows + rr]),
                                k.name() + " token " + tok + " row " + rr + ": " + expected + " vs " + out[tok * rows + rr]);
                    }
                }
            }
        }
    }

    @Test
    void aBlockMoreThan2To30BelowTheLargestIsFlushedAndTheRestStayExact() {
        int rows = SIMD.tileRows(), cols = 64;
        byte[] blocks = new byte[rows * cols / 2];
        java.util.Arrays.fill(blocks, (byte) 0x22); // every value 1.0
        byte[] scales = new byte[rows * 2];
        for (int r = 0; r < rows; r++) {
            scales[2 * r] = (byte) 127;          // 2^0
            scales[2 * r + 1] = (byte) (r == 0 ? 96 : 97); // 2^-31 (flushed) in row 0, 2^-30 (kept) elsewhere
        }
        float[] x = new float[cols];
        java.util.Arrays.fill(x, 1f);
        try (Arena arena = Arena.ofConfined()) {
            WeightMatrix m = Nvfp4Format.mxfp4Tiled("w", rows, cols, MemorySegment.ofArray(scales), SIMD.tileRows(),
                    arena.allocate(WeightFormat.MXFP4.tiledBytes(rows, cols, SIMD.tileRows()), 64));
            Nvfp4Format.fillMxfp4(m, MemorySegment.ofArray(blocks), MemorySegment.ofArray(scales));
            float[] out = new float[rows];
            SIMD.matmul(m, x, 0, cols, 1, out, 0, rows, 0, rows);
            assertEquals(32f, out[0], "row 0: 32 x 1.0; its second block (2^-31) flushed");
            assertEquals(32f + 32 * Math.scalb(1f, -30), out[1], "row 1: the 2^-30 block kept exactly");
        }
    }

    @Test
    void aNanScaleIsRefusedNamingTheElement() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment scales = MemorySegment.ofArray(new byte[]{127, (byte) 0xff});
            WeightMatrix m = Nvfp4Format.mxfp4Tiled("w", 2, 32, scales, SIMD.tileRows(), arena.allocate(WeightFormat.MXFP4.tiledBytes(2, 32, SIMD.tileRows()), 64));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Nvfp4Format.fillMxfp4(m, MemorySegment.ofArray(new byte[32]), scales));
            assertTrue(e.getMessage().contains("[1, 0]") && e.getMessage().contains("NaN"), e.getMessage());
        }
    }

    /** The gpt-oss MXFP4 checkpoint gives the logits of its dense twin (the exactly dequantized experts in bf16). */
    @Test
    void gptOssMxfp4GivesItsDenseTwinsLogits() {
        int[] tokens = Golden.intArray(FamilyGoldenTest.goldenJson("gpt_oss").get("prompts").get("p0"));
        try (WorkerPool pool = new WorkerPool(2);
             CausalLm mx = ModelFamilies.load(FamilyGoldenTest.tiny("gpt_oss-mxfp4"), pool);
             CausalLm dense = ModelFamilies.load(FamilyGoldenTest.tiny("gpt_oss-mxfp4-dense"), pool)) {
            long mxfp4 = mx.summary().matrices().stream().filter(m -> m.format() == WeightFormat.MXFP4).count();
            assertEquals(2 * 2 * 8 + 2 * 8, mxfp4, "gate, up and down of 8 experts in 2 layers are MXFP4");
            float[] a = DecodeConsistencyTest.logitsInBlocks(mx, tokens, tokens.length);
            float[] b = DecodeConsistencyTest.logitsInBlocks(dense, tokens, tokens.length);
            int vocab = mx.vocabSize();
            for (int t = 0; t < tokens.length; t++) {
                double err = Golden.relL2(a, t * vocab, b, t * vocab, vocab);
                // the same weights: only the kernels' summation order differs (MXFP4 per-16 chains vs bf16 tiles)
                assertTrue(err <= 1e-5, "position " + t + ": relative L2 " + err);
                assertEquals(Golden.argmax(b, t * vocab, vocab), Golden.argmax(a, t * vocab, vocab), "argmax at " + t);
            }
            assertArrayEquals(Golden.greedy(dense, tokens, 12), Golden.greedy(mx, tokens, 12), "12 greedy tokens");
        }
    }

    @Test
    void aCorruptMxfp4ScaleIsALoadErrorNamingTheTensor() throws Exception {
        Path dir = Files.createTempDirectory("mxfp4-nan");
        try {
            Path src = FamilyGoldenTest.tiny("gpt_oss-mxfp4");
            for (String f : new String[]{"config.json", "tokenizer.json"}) {
                Files.copy(src.resolve(f), dir.resolve(f));
            }
            SafetensorsWriter w = SafetensorsWriter.copyOf(src.resolve("model.safetensors"));
            SafetensorsWriter.Entry scales = w.get("model.layers.1.mlp.experts.down_proj_scales");
            byte[] patched = scales.data().clone();
            patched[5] = (byte) 0xff;
            w.put("model.layers.1.mlp.experts.down_proj_scales", scales.dtype(), scales.shape(), patched).write(dir.resolve("model.safetensors"));
            try (WorkerPool pool = new WorkerPool(1)) {
                CheckpointException e = assertThrows(CheckpointException.class, () -> ModelFamilies.load(dir, pool).close());
                assertTrue(e.getMessage().contains("down_proj") && e.getMessage().contains("NaN"), e.getMessage());
            }
        } finally {
            try (var s = Files.walk(dir)) {
                s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }
}
