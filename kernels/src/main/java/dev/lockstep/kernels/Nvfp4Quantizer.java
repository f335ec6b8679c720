package dev.lockstep.kernels;

import java.lang.foreign.MemorySegment;

/**
 * NVIDIA ModelOpt's NVFP4 weight recipe, in float32, byte for byte (the target is
 * {@code reference/nvfp4/kjv-qwen3moe-nvfp4}, two independent implementations of the recipe):
 * <ol>
 *   <li>{@code weight_scale_2 = amax / (6 * 448)}, amax over the whole tensor, or over every module that reads
 *       the same input (q/k/v of a layer, gate/up of an expert) so they share it;</li>
 *   <li>per 16 consecutive elements of a row: {@code s = block_amax / (6 * weight_scale_2)}; a zero {@code s}
 *       becomes 1.0; the block scale is {@link E4M3#fromFloat E4M3(s)} (a non-zero {@code s} too small for
 *       E4M3 becomes its smallest value 2^-9, as newer ModelOpt clamps, rather than dividing by zero);</li>
 *   <li>each element's code is {@link E2M1#fromFloat E2M1(w / (f32(block_scale) * weight_scale_2))}; element
 *       2j of a row goes to the low nibble of byte j, 2j+1 to the high nibble.</li>
 * </ol>
 */
public final class Nvfp4Quantizer {
    public static final int BLOCK = 16;

    private Nvfp4Quantizer() {
    }

    /** {@code weight_scale_2} for a tensor (or fused group) whose largest magnitude is {@code amax}. */
    public static float weightScale2(float amax) {
        return amax / (6f * E4M3.MAX);
    }

    /** The largest magnitude in the row-major dense matrix {@code m} (NaN when it holds a NaN). */
    public static float amax(WeightMatrix m) {
        if (m.format() == WeightFormat.BF16 && m.layout() == WeightLayout.ROW_MAJOR) {
            // on the raw bits: for non-negative floats, integer order is float order (a NaN is above infinity)
            short[] row = new short[m.cols()];
            int max = 0;
            for (int r = 0; r < m.rows(); r++) {
                MemorySegment.copy(m.data(), DenseFormat.SHORT_LE, (long) r * m.cols() * 2, row, 0, row.length);
                for (short v : row) {
                    max = Math.max(max, v & 0x7fff);
                }
            }
            return max > 0x7f80 ? Float.NaN : Float.intBitsToFloat(max << 16);
        }
        float[] row = new float[m.cols()];
        float amax = 0f;
        for (int r = 0; r < m.rows(); r++) {
            m.rowToFloat(r, row, 0);
            for (float v : row) {
                amax = Math.max(amax, Math.abs(v));
            }
        }
        return amax;
    }

    /**
     * Quantizes one row of {@code cols} values ({@code cols % 16 == 0}) from {@code row[rowOff..]}: code bytes
     * into {@code codes[codesOff .. + cols/2)}, E4M3 block scales into {@code scales[scalesOff .. + cols/16)}.
     */
    public static void quantizeRow(float[] row, int rowOff, int cols, float weightScale2,
                                   byte[] codes, int codesOff, byte[] scales, int scalesOff) {
        if (cols % BLOCK != 0) {
            throw new IllegalArgumentException("NVFP4 rows must be a multiple of " + BLOCK + " long, not " + cols);
        }
        float six = 6f * weightScale2;
        for (int b = 0; b < cols / BLOCK; b++) {
            int base = rowOff + b * BLOCK;
            float blockAmax = 0f;
            for (int i = 0; i < BLOCK; i++) {
                blockAmax = Math.max(blockAmax, Math.abs(row[base + i]));
            }
            int scale = blockScale(blockAmax / six);
            scales[scalesOff + b] = (byte) scale;
            float divisor = E4M3.toFloat(scale) * weightScale2;
            for (int i = 0; i < BLOCK; i += 2) {
                int lo = E2M1.fromFloat(row[base + i] / divisor);
                int hi = E2M1.fromFloat(row[base + i + 1] / divisor);
                codes[codesOff + (b * BLOCK + i) / 2] = (byte) (lo | hi << 4);
            }
        }
    }

    /**
     * Quantizes the dense matrix {@code dense} with tensor scale {@code weightScale2} straight into the tiled
     * layout of {@code target} (which {@link Nvfp4Format#tiled} described): tile by tile, through buffers of one
     * tile, so no checkpoint-sized temporary exists.
     */
    public static void quantizeInto(WeightMatrix dense, WeightMatrix target) {
        int rows = dense.rows(), cols = dense.cols(), t = target.tileRows();
        float[] row = new float[cols];
        byte[] codes = new byte[t * cols / 2];
        byte[] scales = new byte[t * (cols / BLOCK)];
        Nvfp4Format.TileBuffers buffers = new Nvfp4Format.TileBuffers(target);
        for (int j = 0; j < target.tiles(); j++) {
            java.util.Arrays.fill(codes, (byte) 0);
            java.util.Arrays.fill(scales, (byte) 0);
            int lanes = Math.min(t, rows - j * t);
            for (int lane = 0; lane < lanes; lane++) {
                dense.rowToFloat(j * t + lane, row, 0);
                quantizeRow(row, 0, cols, target.tensorScale(), codes, lane * (cols / 2), scales, lane * (cols / BLOCK));
            }
            Nvfp4Format.fillTile(target, j, lanes, MemorySegment.ofArray(codes), MemorySegment.ofArray(scales), buffers);
        }
    }

    /** {@link #quantizeInto} a new matrix over {@code target} bytes. */
    public static WeightMatrix quantizeAndPack(WeightMatrix dense, float weightScale2, int tileRows, MemorySegment target) {
        WeightMatrix m = Nvfp4Format.tiled(dense.name(), dense.rows(), dense.cols(), weightScale2, tileRows, target);
        quantizeInto(dense, m);
        return m;
    }

    /** E4M3 byte of a block scale: 0 becomes 1.0; a positive value that rounds to 0 becomes 2^-9. */
    static int blockScale(float s) {
        if (s == 0f) {
            return E4M3.fromFloat(1f);
        }
        return Math.max(E4M3.fromFloat(s), 1);
    }

    /** Dequantized element, as ModelOpt's reference: {@code E2M1(code) * (f32(scale) * weight_scale_2)}. */
    public static float dequantize(int code, int scale, float weightScale2) {
        return E2M1.toFloat(code) * (E4M3.toFloat(scale) * weightScale2);
    }
}
