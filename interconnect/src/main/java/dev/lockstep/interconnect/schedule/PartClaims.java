package dev.lockstep.interconnect.schedule;

import java.util.concurrent.atomic.AtomicLongArray;

/**
 * Who runs each part of a region this run: the part's owner or the coordinator taking it over. A part is claimed
 * with the run's stamp ({@link RegionTask#compute}'s, which grows from run to run); the first claim of a run wins
 * and a stale stamp never does, so a worker that is late by whole regions finds its backlog taken. Claims only
 * move forward: a part's slot holds the stamp of the last run that claimed it.
 */
public final class PartClaims {
    private AtomicLongArray stamps;

    public PartClaims(int parts) {
        stamps = new AtomicLongArray(parts);
    }

    /** Room for {@code parts} parts (grows only; call on the coordinator before the run's messages publish it). */
    public void ensure(int parts) {
        if (stamps.length() < parts) {
            AtomicLongArray grown = new AtomicLongArray(parts);
            for (int i = 0; i < stamps.length(); i++) {
                grown.set(i, stamps.get(i));
            }
            stamps = grown;
        }
    }

    /** Claims part {@code part} for the run {@code stamp}; false when it was claimed in this run or a later one. */
    public boolean claim(int part, long stamp) {
        long seen = stamps.get(part);
        return seen < stamp && stamps.compareAndSet(part, seen, stamp);
    }
}
