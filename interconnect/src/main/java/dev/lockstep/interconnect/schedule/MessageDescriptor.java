package dev.lockstep.interconnect.schedule;

import dev.lockstep.interconnect.VectorDescriptor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Layout of one fragment of a scheduled message on a link: a header vector, then its payload vectors (float32,
 * 80 per vector, the last one padded), claimed and committed on the ring at once, so a receiver that sees the
 * header sees the whole fragment.
 *
 * <pre>
 *   byte 0      4          8          12         16         20          24        28      32             40      320
 *   +-----------+----------+----------+----------+----------+-----------+---------+-------+--------------+-------+
 *   | magic     | message  | fragment | floats   | total    | schedule  | flags   | (pad) | stamp (long) | (pad) |
 *   | "STEP"    | id       | index    | in this  | floats,  | id in the | bit 0:  |       | the region   |       |
 *   |           |          |          | fragment | message  | executor  | aborted |       | run          |       |
 *   +-----------+----------+----------+----------+----------+-----------+---------+-------+--------------+-------+
 *   then ceil(floats / 80) payload vectors: the message's floats [fragment * perFragment, ... + floats)
 * </pre>
 * All fields native order (the ring never leaves the process; a transport between hosts would fix an order).
 */
public final class MessageDescriptor {
    public static final int VERSION = 1;
    public static final int MAGIC = 0x5354_4550; // "STEP"
    public static final long MAGIC_OFFSET = 0;
    public static final long MESSAGE_OFFSET = 4;
    public static final long FRAGMENT_OFFSET = 8;
    public static final long FLOATS_OFFSET = 12;
    public static final long TOTAL_OFFSET = 16;
    public static final long SCHEDULE_OFFSET = 20;
    public static final long FLAGS_OFFSET = 24;
    public static final long STAMP_OFFSET = 32;
    public static final int FLAG_ABORTED = 1;
    /** The header takes one vector. */
    public static final int HEADER_VECTORS = 1;

    private MessageDescriptor() {
    }

    /** Writes a fragment's header at {@code offset} of {@code seg}. */
    public static void writeHeader(MemorySegment seg, long offset, int message, int fragment, int floats, int total, int schedule,
                                   boolean aborted, long stamp) {
        seg.set(ValueLayout.JAVA_INT, offset + MAGIC_OFFSET, MAGIC);
        seg.set(ValueLayout.JAVA_INT, offset + MESSAGE_OFFSET, message);
        seg.set(ValueLayout.JAVA_INT, offset + FRAGMENT_OFFSET, fragment);
        seg.set(ValueLayout.JAVA_INT, offset + FLOATS_OFFSET, floats);
        seg.set(ValueLayout.JAVA_INT, offset + TOTAL_OFFSET, total);
        seg.set(ValueLayout.JAVA_INT, offset + SCHEDULE_OFFSET, schedule);
        seg.set(ValueLayout.JAVA_INT, offset + FLAGS_OFFSET, aborted ? FLAG_ABORTED : 0);
        seg.set(ValueLayout.JAVA_LONG, offset + STAMP_OFFSET, stamp);
    }

    public static int message(MemorySegment seg, long offset) {
        return seg.get(ValueLayout.JAVA_INT, offset + MESSAGE_OFFSET);
    }

    public static int fragment(MemorySegment seg, long offset) {
        return seg.get(ValueLayout.JAVA_INT, offset + FRAGMENT_OFFSET);
    }

    public static int floats(MemorySegment seg, long offset) {
        return seg.get(ValueLayout.JAVA_INT, offset + FLOATS_OFFSET);
    }

    public static int total(MemorySegment seg, long offset) {
        return seg.get(ValueLayout.JAVA_INT, offset + TOTAL_OFFSET);
    }

    public static int schedule(MemorySegment seg, long offset) {
        return seg.get(ValueLayout.JAVA_INT, offset + SCHEDULE_OFFSET);
    }

    public static boolean aborted(MemorySegment seg, long offset) {
        return (seg.get(ValueLayout.JAVA_INT, offset + FLAGS_OFFSET) & FLAG_ABORTED) != 0;
    }

    public static long stamp(MemorySegment seg, long offset) {
        return seg.get(ValueLayout.JAVA_LONG, offset + STAMP_OFFSET);
    }

    /** Vectors a fragment carrying {@code floats} payload floats takes on the ring, header included. */
    public static int fragmentVectors(int floats) {
        return HEADER_VECTORS + VectorDescriptor.vectorsForFloats(floats);
    }

    /** True when the header at {@code offset} is fragment {@code fragment} of message {@code message}. */
    public static boolean matches(MemorySegment seg, long offset, int message, int fragment) {
        return seg.get(ValueLayout.JAVA_INT, offset + MAGIC_OFFSET) == MAGIC && message(seg, offset) == message && fragment(seg, offset) == fragment;
    }

    /** What the vector at {@code offset} holds, for an error message: "fragment 0 of message 12", or "no message header". */
    public static String describe(MemorySegment seg, long offset) {
        int magic = seg.get(ValueLayout.JAVA_INT, offset + MAGIC_OFFSET);
        return magic != MAGIC ? "no message header (0x" + Integer.toHexString(magic) + ")"
                : "fragment " + fragment(seg, offset) + " of message " + message(seg, offset);
    }
}
