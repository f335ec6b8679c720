package dev.lockstep.memory;

import java.util.Arrays;

/** Element types as safetensors names them, with their size in bytes. */
public enum DType {
    F32("F32", 4),
    BF16("BF16", 2),
    F16("F16", 2),
    I32("I32", 4),
    I64("I64", 8),
    U8("U8", 1),
    F8_E4M3("F8_E4M3", 1);

    private final String safetensorsName;
    private final int sizeBytes;

    DType(String safetensorsName, int sizeBytes) {
        this.safetensorsName = safetensorsName;
        this.sizeBytes = sizeBytes;
    }

    public int sizeBytes() {
        return sizeBytes;
    }

    public String safetensorsName() {
        return safetensorsName;
    }

    /** @throws IllegalArgumentException naming the unknown dtype and the known ones */
    public static DType fromSafetensors(String name) {
        for (DType t : values()) {
            if (t.safetensorsName.equals(name)) {
                return t;
            }
        }
        throw new IllegalArgumentException("unsupported dtype '" + name + "' (supported: "
                + Arrays.toString(values()) + ")");
    }
}
