package dev.lockstep.memory;

import java.lang.foreign.MemorySegment;

/** A tensor's metadata plus its bytes, a read-only slice of the mmapped file (never copied). */
public record TensorView(TensorInfo info, MemorySegment data) {
    public String name() {
        return info.name();
    }

    public DType dtype() {
        return info.dtype();
    }
}
