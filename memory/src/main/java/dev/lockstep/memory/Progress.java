package dev.lockstep.memory;

/** Receives progress of a long operation (loading, quantizing, writing) in units of its choosing, usually bytes. */
@FunctionalInterface
public interface Progress {
    Progress NONE = (done, total) -> { };

    void update(long done, long total);
}
