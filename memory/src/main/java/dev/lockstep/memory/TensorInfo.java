package dev.lockstep.memory;

import java.nio.file.Path;
import java.util.Arrays;

/**
 * Where one tensor lives: its file, its absolute byte range in that file, its dtype and shape.
 *
 * @param offsetBytes absolute offset of the first byte in {@code file} (header already skipped)
 */
public record TensorInfo(String name, DType dtype, long[] shape, Path file, long offsetBytes, long lengthBytes) {

    public TensorInfo {
        shape = shape.clone();
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    public long elementCount() {
        long n = 1;
        for (long d : shape) {
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    public String shapeString() {
        return Arrays.toString(shape);
    }

    @Override
    public String toString() {
        return name + " " + dtype + shapeString() + " @" + file.getFileName() + "+" + offsetBytes;
    }
}
