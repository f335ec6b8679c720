package dev.lockstep.memory;

/**
 * A checkpoint on disk is not what it claims to be. {@link #problem()} says which check failed, so callers
 * (and tests) can tell a truncated shard from a wrong shape without parsing the message.
 */
public final class CheckpointException extends LockstepException {
    public enum Problem {
        /** A file or directory the checkpoint needs is absent or unreadable. */
        MISSING_FILE,
        /** The 8-byte header length is impossible for the file size. */
        HEADER_LENGTH,
        /** The JSON header (or the shard index) does not parse or has the wrong structure. */
        HEADER_JSON,
        /** A dtype string this reader does not know. */
        UNSUPPORTED_DTYPE,
        /** A tensor's data_offsets lie outside the data section (truncated file, corrupt header). */
        OFFSETS_OUT_OF_RANGE,
        /** Two tensors' byte ranges overlap. */
        OVERLAP,
        /** The tensors leave a gap in the data section or do not reach its end (they must tile it exactly). */
        NOT_TILED,
        /** A tensor's byte length is not product(shape) x dtype size. */
        BYTE_LENGTH,
        /** The shard index and the shards disagree. */
        INDEX_MISMATCH,
        /** A tensor the architecture needs is absent. */
        MISSING_TENSOR,
        /** A tensor has a shape other than the architecture expects. */
        SHAPE_MISMATCH,
        /** A tensor has a dtype the architecture (or its kernels) cannot use. */
        DTYPE_MISMATCH,
        /** A weight is NaN or infinite: the file is corrupt (no trained checkpoint holds such values). */
        NON_FINITE,
        /** A mapped file was truncated or rewritten while it was being read. */
        FILE_CHANGED
    }

    private final Problem problem;

    public CheckpointException(Problem problem, String message) {
        super(message);
        this.problem = problem;
    }

    public CheckpointException(Problem problem, String message, Throwable cause) {
        super(message, cause);
        this.problem = problem;
    }

    public Problem problem() {
        return problem;
    }
}
