package dev.lockstep.verify;

import dev.lockstep.kernels.E2M1;
import dev.lockstep.kernels.E4M3;
import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.Nvfp4Format;
import dev.lockstep.kernels.Nvfp4Quantizer;
import dev.lockstep.kernels.PanamaKernels;
import dev.lockstep.kernels.ScalarKernels;
import dev.lockstep.kernels.WeightFormat;
import dev.lockstep.kernels.WeightMatrix;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * NVFP4 matmul: the Vector API kernel against the scalar reference (bit for bit) and both against the
 * definition written out here from the checkpoint bytes (per block two sequential fma chains of E2M1 x activation,
 * columns 0-7 and 8-15, their sum into one fma with the E4M3 block scale, times weight_scale_2 at the end), on awkward shapes: one block, odd tile
 * counts, a partial last tile, row ranges starting and ending inside tiles, 1-9 tokens. Random codes cover all
 * 16 nibbles (-0 included); scales cover subnormal E4M3 values. Runs at 128, 256 and 512 bits (verify/pom.xml).
 */
class Nvfp4KernelTest {
    static final Kernels SCALAR = new ScalarKernels();
    static final Kernels SIMD = new PanamaKernels();

    @BeforeAll
    static void widthSupported() {
        KernelMatrixTest.assumeWidthSupported();
    }

    record Checkpointed(byte[] codes, byte[] scales, float scale2) {
    }

    static Checkpointed random(int rows, int cols, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        byte[] codes = new byte[rows * cols / 2];
        byte[] scales = new byte[rows * cols / 16];
        r.nextBytes(codes);
        for (int i = 0; i < scales.length; i++) {
            scales[i] = (byte) r.nextInt(0x7f); // 0x00..0x7e: zero, subnormal and normal scales, never NaN
        }
        return new Checkpointed(codes, scales, 0.00123f);
    }

    static WeightMatrix pack(Checkpointed c, int rows, int cols, int tileRows, Arena arena) {
        MemorySegment target = arena.allocate(WeightFormat.NVFP4.tiledBytes(rows, cols, tileRows), 64);
        return Nvfp4Format.pack("w", rows, cols, MemorySegment.ofArray(c.codes()), MemorySegment.ofArray(c.scales()), c.scale2(), tileRows, target);
    }

    /** The definition, from the checkpoint layout. */
    static float definition(Checkpointed c, int cols, int row, float[] x, int xOff) {
        float acc = 0f;
        for (int b = 0; b < cols / 16; b++) {
            float[] half = new float[2];
            for (int k = b * 16; k < b * 16 + 16; k++) {
                int code = (c.codes()[(row * cols + k) / 2] >> 4 * (k % 2)) & 0xf;
                half[(k % 16) / 8] = Math.fma(E2M1.toFloat(code), x[xOff + k], half[(k % 16) / 8]);
            }
            acc = Math.fma(E4M3.toFloat(c.scales()[row * (cols / 16) + b]), half[0] + half[1], acc);
        }
        return acc * c.scale2();
    }

    static Stream<Arguments> cases() {
        Stream.Builder<Arguments> b = Stream.builder();
        for (int cols : new int[]{16, 32, 48, 272, 1040}) {
            for (int tokens : new int[]{1, 2, 3, 4, 5, 6, 9}) {
                b.add(Arguments.of(cols, tokens));
            }
        }
        return b.build();
    }

    @ParameterizedTest(name = "cols={0} tokens={1}")
    @MethodSource("cases")
    void vectorScalarAndDefinitionAgreeBitForBit(int cols, int tokens) {
        int t = SIMD.tileRows();
        int rows = 5 * t + 3;
        int[][] ranges = {{0, rows}, {1, rows - 1}, {t + 1, 2 * t - 1}, {2 * t + 2, 3 * t + 1}, {3 * t - 1, 4 * t + 3}, {t - 1, 5 * t + 2}};
        Checkpointed c = random(rows, cols, cols * 7L + tokens);
        int xOff = 3, xStride = cols + 5, outOff = 1, outStride = rows + 2;
        float[] x = KernelMatrixTest.random(xOff + tokens * xStride, 17);
        try (Arena arena = Arena.ofConfined()) {
            WeightMatrix vectorTiles = pack(c, rows, cols, t, arena);
            WeightMatrix scalarTiles = pack(c, rows, cols, SCALAR.tileRows(), arena);
            for (int r = 0; r < rows; r += 3) {
                for (int k = 0; k < cols; k += 5) {
                    int code = (c.codes()[(r * cols + k) / 2] >> 4 * (k % 2)) & 0xf;
                    assertEquals(Nvfp4Quantizer.dequantize(code, c.scales()[r * (cols / 16) + k / 16], c.scale2()), vectorTiles.get(r, k),
                            "packing moves (" + r + ", " + k + ")");
                }
            }
            for (int[] range : ranges) {
                float[] expected = new float[outOff + tokens * outStride];
                for (int tok = 0; tok < tokens; tok++) {
                    for (int r = range[0]; r < range[1]; r++) {
                        expected[outOff + tok * outStride + r] = definition(c, cols, r, x, xOff + tok * xStride);
                    }
                }
                String where = " rows [" + range[0] + ", " + range[1] + ")";
                for (Object[] run : new Object[][]{{SCALAR, scalarTiles}, {SCALAR, vectorTiles}, {SIMD, vectorTiles}}) {
                    Kernels k = (Kernels) run[0];
                    WeightMatrix m = (WeightMatrix) run[1];
                    float[] actual = new float[expected.length];
                    k.matmul(m, x, xOff, xStride, tokens, actual, outOff, outStride, range[0], range[1]);
                    assertArrayEquals(expected, actual, k.name() + " on " + m + where);
                    for (int tok = 0; tok < tokens; tok++) {
                        float[] alone = new float[rows];
                        k.matmul(m, x, xOff + tok * xStride, xStride, 1, alone, 0, rows, range[0], range[1]);
                        assertArrayEquals(java.util.Arrays.copyOfRange(expected, outOff + tok * outStride, outOff + tok * outStride + rows), alone,
                                k.name() + " token " + tok + " alone" + where);
                    }
                }
            }
        }
    }

    @Test
    void theKernelIsCloseToTheDequantizedProductInDouble() {
        int rows = 40, cols = 256;
        Checkpointed c = random(rows, cols, 5);
        float[] x = KernelMatrixTest.random(cols, 6);
        try (Arena arena = Arena.ofConfined()) {
            WeightMatrix w = pack(c, rows, cols, SIMD.tileRows(), arena);
            float[] out = new float[rows];
            SIMD.matmul(w, x, 0, cols, 1, out, 0, rows, 0, rows);
            for (int r = 0; r < rows; r++) {
                double exact = 0, magnitude = 0;
                for (int k = 0; k < cols; k++) {
                    exact += (double) w.get(r, k) * x[k];
                    magnitude += Math.abs((double) w.get(r, k) * x[k]);
                }
                assertEquals(exact, out[r], 1e-6 * magnitude + 1e-30, "row " + r);
            }
        }
    }

    @Test
    void badScalesAndShapesAreRefused() {
        try (Arena arena = Arena.ofConfined()) {
            Checkpointed c = random(4, 32, 1);
            c.scales()[5] = 0x7f;
            IllegalArgumentException nan = assertThrows(IllegalArgumentException.class, () -> pack(c, 4, 32, 8, arena));
            assertTrue(nan.getMessage().contains("[2, 1]"), nan.getMessage());
            c.scales()[5] = (byte) 0x90;
            assertThrows(IllegalArgumentException.class, () -> pack(c, 4, 32, 8, arena), "negative block scale");
            c.scales()[5] = 0x10;
            assertThrows(IllegalArgumentException.class, () -> pack(new Checkpointed(c.codes(), c.scales(), Float.NaN), 4, 32, 8, arena));
            assertThrows(IllegalArgumentException.class, () -> Nvfp4Format.pack("w", 4, 24, MemorySegment.ofArray(new byte[48]),
                    MemorySegment.ofArray(new byte[6]), 1f, 8, arena.allocate(1024)), "24 columns is not whole blocks");
        }
    }
}
