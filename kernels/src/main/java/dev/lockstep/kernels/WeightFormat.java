package dev.lockstep.kernels;

import dev.lockstep.memory.DType;

/**
 * Storage formats a {@link WeightMatrix} can hold; each has its own kernel path. NVFP4 and MXFP4 join here
 * (with their block size and scale layout) when their issues land.
 */
public enum WeightFormat {
    F32(4),
    BF16(2),
    F16(2);

    private final int bytesPerElement;

    WeightFormat(int bytesPerElement) {
        this.bytesPerElement = bytesPerElement;
    }

    public int bytesPerElement() {
        return bytesPerElement;
    }

    /** The weight format for a safetensors dtype, or null when that dtype cannot be a weight matrix. */
    public static WeightFormat of(DType dtype) {
        return switch (dtype) {
            case F32 -> F32;
            case BF16 -> BF16;
            case F16 -> F16;
            default -> null;
        };
    }
}
