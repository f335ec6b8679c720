package dev.lockstep.moe;

import dev.lockstep.kernels.WeightFormat;
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

    /** {@code arena} receives the packed copies and must outlive the model. */
    public WeightLoader(String family, Checkpoint checkpoint, int tileRows, TierArena arena) {
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

    /** A {@code [rows, cols]} weight matrix for matmul, repacked tiled (format unchanged). */
    public WeightMatrix matrix(String name, int rows, int cols) {
        return packed(rowMajor(name, rows, cols));
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
        return new WeightMatrix(m.name(), m.format(), m.rows(), m.cols(), target);
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
        WeightFormat format = WeightFormat.of(v.dtype());
        if (format == null) {
            throw new CheckpointException(CheckpointException.Problem.DTYPE_MISMATCH,
                    v.info().file() + ": tensor '" + name + "' has dtype " + v.dtype() + "; " + family
                            + " weights must be one of " + Arrays.toString(WeightFormat.values()));
        }
        return finite(new WeightMatrix(name, format, rows, cols, v.data()), v);
    }

    /** A 1-D tensor (norm weights) decoded to float32 on the heap: small, read on every token. */
    public float[] vector(String name, int n) {
        TensorView v = fetch(name, n);
        WeightFormat format = WeightFormat.of(v.dtype());
        if (format == null) {
            throw new CheckpointException(CheckpointException.Problem.DTYPE_MISMATCH,
                    v.info().file() + ": tensor '" + name + "' has dtype " + v.dtype() + "; " + family
                            + " expects one of " + Arrays.toString(WeightFormat.values()));
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
