package dev.lockstep.moe;

import dev.lockstep.kernels.DenseFormat;
import dev.lockstep.kernels.Nvfp4Format;
import dev.lockstep.kernels.Nvfp4Quantizer;
import dev.lockstep.kernels.WeightFormat;
import dev.lockstep.memory.DType;
import dev.lockstep.kernels.WeightLayout;
import dev.lockstep.memory.TierArena;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.Checkpoint;
import dev.lockstep.memory.CheckpointException;
import dev.lockstep.memory.TensorInfo;
import dev.lockstep.memory.TensorView;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Fetches tensors a family declares, checking presence, dtype and shape, and records them so the family's
 * summary lists exactly what it uses. Errors name the family, the tensor, and the expected vs found value.
 * Matrices the kernels multiply are repacked into the kernels' {@link WeightLayout#TILED} layout in an
 * HBM-tier arena; lookup tables (embeddings) are copied row-major into the same arena. A loaded model
 * touches no checkpoint page, so the checkpoint is closed once loading ends.
 */
public final class WeightLoader {
    private static final long ALIGNMENT_BYTES = 64;

    private final String family;
    private final Checkpoint checkpoint;
    private final int tileRows;
    private final TierArena arena;
    private final List<TensorInfo> used = new ArrayList<>();
    private final LoadOptions options;
    private final Nvfp4Recipe recipe;
    private final java.util.Map<String, Float> groupScale2 = new java.util.HashMap<>();
    private static final java.lang.foreign.ValueLayout.OfFloat FLOAT_LE =
            java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);

    /** {@code arena} receives the packed copies and must outlive the model. */
    public WeightLoader(String family, Checkpoint checkpoint, int tileRows, TierArena arena) {
        this(family, checkpoint, tileRows, arena, LoadOptions.DEFAULT);
    }

    public WeightLoader(String family, Checkpoint checkpoint, int tileRows, TierArena arena, LoadOptions options) {
        this.options = options;
        this.recipe = options.recipe();
        this.family = family;
        this.checkpoint = checkpoint;
        this.tileRows = tileRows;
        this.arena = arena;
    }

    public boolean has(String name) {
        return checkpoint.contains(name);
    }

    private TensorView fetch(String name, long... shape) {
        if (!checkpoint.contains(name)) {
            throw new CheckpointException(CheckpointException.Problem.MISSING_TENSOR,
                    checkpoint.directory() + ": " + family + " needs tensor '" + name + "' with shape " + Arrays.toString(shape)
                            + ", which the checkpoint does not have");
        }
        TensorView v = checkpoint.tensor(name);
        if (!Arrays.equals(v.info().shape(), shape)) {
            throw new CheckpointException(CheckpointException.Problem.SHAPE_MISMATCH,
                    v.info().file() + ": tensor '" + name + "' has shape " + v.info().shapeString() + ", but " + family
                            + " with this config.json expects " + Arrays.toString(shape));
        }
        used.add(v.info());
        return v;
    }

    /**
     * A {@code [rows, cols]} weight matrix for matmul, packed for the kernels: an NVFP4 module (ModelOpt's
     * {@code weight}/{@code weight_scale}/{@code weight_scale_2} or compressed-tensors' {@code weight_packed}/
     * {@code weight_scale}/{@code weight_global_scale}) as NVFP4; a dense one as it is stored, or quantized to NVFP4
     * when the load options ask for it and {@link Nvfp4Recipe} quantizes it.
     */
    public WeightMatrix matrix(String name, int rows, int cols) {
        String module = Nvfp4Recipe.module(name);
        if (module != null && checkpoint.contains(module + ".weight_scale")) {
            return nvfp4(name, module, rows, cols);
        }
        WeightMatrix dense = rowMajor(name, rows, cols);
        if (options.quantizeNvfp4() && recipe.quantizes(name)) {
            return quantized(dense);
        }
        return packed(dense);
    }

    private WeightMatrix nvfp4(String name, String module, int rows, int cols) {
        boolean compressedTensors = checkpoint.contains(module + ".weight_packed");
        String codesName = compressedTensors ? module + ".weight_packed" : name;
        if (cols % Nvfp4Format.BLOCK != 0) {
            throw new CheckpointException(CheckpointException.Problem.SHAPE_MISMATCH, checkpoint.directory() + ": NVFP4 module '" + module
                    + "' has " + cols + " input columns; NVFP4 needs a multiple of " + Nvfp4Format.BLOCK);
        }
        TensorView codes = fetch(codesName, rows, cols / 2);
        requireDtype(codes, DType.U8);
        TensorView scales = fetch(module + ".weight_scale", rows, cols / Nvfp4Format.BLOCK);
        requireDtype(scales, DType.F8_E4M3);
        float tensorScale;
        if (compressedTensors) {
            // compressed-tensors stores the divisor 448*6/amax; ModelOpt the multiplier amax/(448*6)
            tensorScale = 1f / scalar(module + ".weight_global_scale");
            if (checkpoint.contains(module + ".input_global_scale")) {
                scalar(module + ".input_global_scale"); // W4A4 activation scale: read, checked, not used by W4A16 kernels
            }
        } else {
            tensorScale = scalar(module + ".weight_scale_2");
            if (checkpoint.contains(module + ".input_scale")) {
                scalar(module + ".input_scale"); // as above
            }
        }
        long bytes = WeightFormat.NVFP4.tiledBytes(rows, cols, tileRows);
        MemorySegment target = arena.allocate(name, bytes, ALIGNMENT_BYTES);
        return reading(name, () -> {
            try {
                return Nvfp4Format.pack(name, rows, cols, codes.data(), scales.data(), tensorScale, tileRows, target);
            } catch (IllegalArgumentException e) {
                throw new CheckpointException(CheckpointException.Problem.NON_FINITE, scales.info().file() + ": " + e.getMessage(), e);
            }
        });
    }

    /** A float32 scalar tensor (shape [] or [1]). */
    private float scalar(String name) {
        if (!checkpoint.contains(name)) {
            throw new CheckpointException(CheckpointException.Problem.MISSING_TENSOR, checkpoint.directory() + ": " + family
                    + " needs the NVFP4 scale tensor '" + name + "', which the checkpoint does not have");
        }
        TensorView v = checkpoint.tensor(name);
        if (v.info().elementCount() != 1) {
            throw new CheckpointException(CheckpointException.Problem.SHAPE_MISMATCH, v.info().file() + ": tensor '" + name + "' has shape "
                    + v.info().shapeString() + ", expected a scalar ([] or [1])");
        }
        requireDtype(v, DType.F32);
        used.add(v.info());
        float value = reading(name, () -> v.data().get(FLOAT_LE, 0));
        if (!(value > 0f) || !Float.isFinite(value)) {
            throw new CheckpointException(CheckpointException.Problem.NON_FINITE, v.info().file() + ": tensor '" + name + "' is " + value
                    + "; an NVFP4 scale must be finite and positive");
        }
        return value;
    }

    private void requireDtype(TensorView v, DType dtype) {
        if (v.dtype() != dtype) {
            throw new CheckpointException(CheckpointException.Problem.DTYPE_MISMATCH, v.info().file() + ": tensor '" + v.name()
                    + "' has dtype " + v.dtype() + "; NVFP4 needs " + dtype);
        }
    }

    /** {@code dense} quantized with the recipe (its shared-input group's amax), then packed. */
    private WeightMatrix quantized(WeightMatrix dense) {
        int rows = dense.rows(), cols = dense.cols();
        if (cols % Nvfp4Format.BLOCK != 0) {
            return packed(dense); // NVFP4 needs whole 16-column blocks: this one stays dense (inspect shows it)
        }
        Float shared = groupScale2.get(dense.name());
        if (shared == null) {
            float amax = 0f;
            List<String> group = Nvfp4Recipe.sharedInputGroup(dense.name(), n -> checkpoint.contains(n) && recipe.quantizes(n));
            for (String member : group) {
                WeightMatrix m = member.equals(dense.name()) ? dense : rowMajorUnrecorded(member);
                amax = Math.max(amax, reading(member, () -> Nvfp4Quantizer.amax(m)));
            }
            shared = Nvfp4Quantizer.weightScale2(amax);
            for (String member : group) {
                groupScale2.put(member, shared);
            }
        }
        float scale2 = shared;
        MemorySegment target = arena.allocate(dense.name(), WeightFormat.NVFP4.tiledBytes(rows, cols, tileRows), ALIGNMENT_BYTES);
        return reading(dense.name(), () -> Nvfp4Quantizer.quantizeAndPack(dense, scale2, tileRows, target));
    }

    /**
     * Every read of checkpoint bytes goes through here: the JVM reports a fault on a mapped page (SIGBUS: the
     * file shrank under its mapping) as an {@link InternalError}; it becomes a checkpoint error naming the tensor.
     */
    private <T> T reading(String tensor, java.util.function.Supplier<T> read) {
        try {
            return read.get();
        } catch (InternalError e) {
            throw new CheckpointException(CheckpointException.Problem.FILE_CHANGED, checkpoint.directory() + ": reading tensor '"
                    + tensor + "' failed (" + e.getMessage() + "): a checkpoint file was truncated or changed while it was being loaded", e);
        }
    }

    /** A tiled copy of {@code m} for matmul (for tied embeddings: one tensor, two uses). */
    public WeightMatrix packed(WeightMatrix m) {
        long bytes = WeightMatrix.byteSize(WeightLayout.TILED, m.format(), m.rows(), m.cols(), tileRows);
        MemorySegment target = arena.allocate(m.name(), bytes, ALIGNMENT_BYTES);
        return reading(m.name(), () -> m.packTiled(tileRows, target));
    }

    /** A row-major copy of {@code m} in the arena (lookup tables: nothing then points into the checkpoint). */
    public WeightMatrix copied(WeightMatrix m) {
        MemorySegment target = arena.allocate(m.name(), m.data().byteSize(), ALIGNMENT_BYTES);
        reading(m.name(), () -> target.copyFrom(m.data()));
        return new WeightMatrix(m.name(), (DenseFormat) m.format(), m.rows(), m.cols(), target);
    }

    /** Rejects a matrix holding NaN or infinity, naming the tensor and the element. */
    private WeightMatrix finite(WeightMatrix m, TensorView v) {
        long at = reading(m.name(), m::firstNonFinite);
        if (at >= 0) {
            throw new CheckpointException(CheckpointException.Problem.NON_FINITE,
                    v.info().file() + ": tensor '" + m.name() + "' holds a non-finite value (" + m.get((int) (at / m.cols()), (int) (at % m.cols()))
                            + ") at [" + at / m.cols() + ", " + at % m.cols() + "]: the file is corrupt");
        }
        return m;
    }

    /** A {@code [rows, cols]} matrix in any supported weight format, row-major over the mmapped bytes. */
    public WeightMatrix rowMajor(String name, int rows, int cols) {
        TensorView v = fetch(name, rows, cols);
        return denseOver(v, rows, cols);
    }

    /** A group member read for its amax before the family asks for it (recorded when it is). */
    private WeightMatrix rowMajorUnrecorded(String name) {
        TensorView v = checkpoint.tensor(name);
        long[] shape = v.info().shape();
        if (shape.length != 2) {
            throw new CheckpointException(CheckpointException.Problem.SHAPE_MISMATCH, v.info().file() + ": tensor '" + name
                    + "' has shape " + v.info().shapeString() + ", expected a matrix");
        }
        return denseOver(v, Math.toIntExact(shape[0]), Math.toIntExact(shape[1]));
    }

    private WeightMatrix denseOver(TensorView v, int rows, int cols) {
        String name = v.name();
        DenseFormat format = WeightFormat.of(v.dtype());
        if (format == null) {
            throw new CheckpointException(CheckpointException.Problem.DTYPE_MISMATCH,
                    v.info().file() + ": tensor '" + name + "' has dtype " + v.dtype() + "; " + family
                            + " weights must be one of F32, BF16, F16, or NVFP4 (U8 codes with an F8_E4M3 weight_scale)");
        }
        return finite(new WeightMatrix(name, format, rows, cols, v.data()), v);
    }

    /** A 1-D tensor (norm weights) decoded to float32 on the heap: small, read on every token. */
    public float[] vector(String name, int n) {
        TensorView v = fetch(name, n);
        DenseFormat format = WeightFormat.of(v.dtype());
        if (format == null) {
            throw new CheckpointException(CheckpointException.Problem.DTYPE_MISMATCH,
                    v.info().file() + ": tensor '" + name + "' has dtype " + v.dtype() + "; " + family
                            + " expects one of F32, BF16, F16");
        }
        float[] out = new float[n];
        WeightMatrix m = finite(new WeightMatrix(name, format, 1, n, v.data()), v);
        reading(name, () -> {
            m.rowToFloat(0, out, 0);
            return out;
        });
        return out;
    }

    /** Checkpoint tensors not fetched (so far). */
    public List<TensorInfo> unused() {
        java.util.Set<String> names = new java.util.HashSet<>();
        used.forEach(t -> names.add(t.name()));
        return checkpoint.tensors().stream().filter(t -> !names.contains(t.name())).toList();
    }

    /** Tensors fetched so far, in order. */
    public List<TensorInfo> used() {
        return List.copyOf(used);
    }

    public Checkpoint checkpoint() {
        return checkpoint;
    }
}
