package dev.lockstep.bench;

import dev.lockstep.interconnect.VectorDescriptor;
import dev.lockstep.interconnect.VectorRing;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.ringbuffer.OneToOneRingBuffer;
import org.agrona.concurrent.ringbuffer.RingBufferDescriptor;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Group;
import org.openjdk.jmh.annotations.GroupThreads;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.infra.Control;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.concurrent.TimeUnit;

/**
 * A link between two threads, ours ({@link VectorRing}) against Agrona's {@link OneToOneRingBuffer}, in one run:
 * {@code rtt} is a one-vector ping-pong (the {@code ping} method's sample times are the round trip; {@code pong}
 * echoes; a ping carries a sequence number and waits for its own reply, so a reply stranded by the end of an
 * iteration cannot make the next round trip look free), {@code stream} moves vectors one way (the {@code consume} rate is the throughput). Both move 320-byte
 * payloads and spin on empty/full (the consumer backs off with {@link Thread#onSpinWait()} only). The two threads
 * are pinned to CPUs 0 and 1 ({@link dev.lockstep.interconnect.Affinity}).
 *
 * <pre>java -jar bench/target/benchmarks.jar LinkBenchmark</pre>
 */
@State(Scope.Group)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED"})
public class LinkBenchmark {
    static final int V = VectorDescriptor.VECTOR_BYTES;

    @Param({"lockstep", "agrona"})
    public String impl;

    /** Slots (vectors) per ring. */
    @Param({"256"})
    public int capacity;

    private Arena arena;
    private VectorRing ab, ba;
    private OneToOneRingBuffer agronaAb, agronaBa;
    private MemorySegment pingBuf, pongBuf, streamIn, streamOut;
    private UnsafeBuffer agronaPing, agronaPong;
    private final int[] got = new int[1];
    private long pingSeq;
    private MemorySegment replyBuf;
    private UnsafeBuffer agronaReply;

    @Setup(Level.Trial)
    public void setup() {
        arena = Arena.ofShared();
        ab = new VectorRing(arena, capacity);
        ba = new VectorRing(arena, capacity);
        // Agrona records carry an 8-byte header and align to 8: 328 bytes per 320-byte message
        int bytes = Integer.highestOneBit(capacity * (V + 8)) * 2;
        agronaAb = new OneToOneRingBuffer(new UnsafeBuffer(ByteBuffer.allocateDirect(bytes + RingBufferDescriptor.TRAILER_LENGTH)));
        agronaBa = new OneToOneRingBuffer(new UnsafeBuffer(ByteBuffer.allocateDirect(bytes + RingBufferDescriptor.TRAILER_LENGTH)));
        pingBuf = arena.allocate(V);
        replyBuf = arena.allocate(V);
        agronaReply = new UnsafeBuffer(ByteBuffer.allocateDirect(V));
        pongBuf = arena.allocate(V);
        streamIn = arena.allocate(V);
        streamOut = arena.allocate(V);
        agronaPing = new UnsafeBuffer(ByteBuffer.allocateDirect(V));
        agronaPong = new UnsafeBuffer(ByteBuffer.allocateDirect(V));
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }

    private final org.agrona.concurrent.MessageHandler copyToPong = (type, buffer, index, length) -> {
        buffer.getBytes(index, agronaPong, 0, length);
        got[0]++;
    };

    private final org.agrona.concurrent.MessageHandler copyToReply = (type, buffer, index, length) -> {
        buffer.getBytes(index, agronaReply, 0, length);
        got[0]++;
    };

    /** Each benchmark thread pinned to its own CPU (thread i of the group on CPU i), or unpinned with the reason printed. */
    @State(Scope.Thread)
    public static class Pinned {
        @Setup(Level.Trial)
        public void pin(org.openjdk.jmh.infra.ThreadParams thread) {
            int cpu = thread.getGroupThreadIndex() % dev.lockstep.interconnect.Affinity.cpusAtStart();
            dev.lockstep.interconnect.Affinity.Result r = dev.lockstep.interconnect.Affinity.pinCurrentThread(cpu);
            if (!r.pinned()) {
                System.err.println("LinkBenchmark: running unpinned: " + r.why());
            }
        }
    }

    @Benchmark
    @Group("rtt")
    @GroupThreads(1)
    @BenchmarkMode(Mode.SampleTime)
    @OutputTimeUnit(TimeUnit.NANOSECONDS)
    public int ping(Control control, Pinned pinned) {
        long seq = ++pingSeq; // the reply must carry it: a reply left over from the last iteration is skipped
        if ("lockstep".equals(impl)) {
            pingBuf.set(java.lang.foreign.ValueLayout.JAVA_LONG, 0, seq);
            while (!ab.offer(pingBuf, 0, 1)) {
                if (control.stopMeasurement) {
                    return 0;
                }
                Thread.onSpinWait();
            }
            do {
                while (ba.poll(replyBuf, 0, 1) == 0) {
                    if (control.stopMeasurement) {
                        return 0;
                    }
                    Thread.onSpinWait();
                }
            } while (replyBuf.get(java.lang.foreign.ValueLayout.JAVA_LONG, 0) != seq);
            return 1;
        }
        agronaPing.putLong(0, seq);
        while (!agronaAb.write(1, agronaPing, 0, V)) {
            if (control.stopMeasurement) {
                return 0;
            }
            Thread.onSpinWait();
        }
        do {
            while (agronaBa.read(copyToReply, 1) == 0) {
                if (control.stopMeasurement) {
                    return 0;
                }
                Thread.onSpinWait();
            }
        } while (agronaReply.getLong(0) != seq);
        return 1;
    }

    @Benchmark
    @Group("rtt")
    @GroupThreads(1)
    @BenchmarkMode(Mode.SampleTime)
    @OutputTimeUnit(TimeUnit.NANOSECONDS)
    public int pong(Control control, Pinned pinned) {
        if ("lockstep".equals(impl)) {
            while (ab.poll(pongBuf, 0, 1) == 0) {
                if (control.stopMeasurement) {
                    return 0;
                }
                Thread.onSpinWait();
            }
            while (!ba.offer(pongBuf, 0, 1)) {
                if (control.stopMeasurement) {
                    return 0;
                }
                Thread.onSpinWait();
            }
            return 1;
        }
        while (agronaAb.read(copyToPong, 1) == 0) {
            if (control.stopMeasurement) {
                return 0;
            }
            Thread.onSpinWait();
        }
        while (!agronaBa.write(1, agronaPong, 0, V)) {
            if (control.stopMeasurement) {
                return 0;
            }
            Thread.onSpinWait();
        }
        return 1;
    }

    @Benchmark
    @Group("stream")
    @GroupThreads(1)
    @BenchmarkMode(Mode.Throughput)
    @OutputTimeUnit(TimeUnit.MICROSECONDS)
    public boolean produce(Control control, Pinned pinned) {
        if ("lockstep".equals(impl)) {
            while (!ab.offer(streamIn, 0, 1)) {
                if (control.stopMeasurement) {
                    return false;
                }
                Thread.onSpinWait();
            }
            return true;
        }
        while (!agronaAb.write(1, agronaPing, 0, V)) {
            if (control.stopMeasurement) {
                return false;
            }
            Thread.onSpinWait();
        }
        return true;
    }

    /** One vector received per call: its rate is the link's throughput in vectors per microsecond. */
    @Benchmark
    @Group("stream")
    @GroupThreads(1)
    @BenchmarkMode(Mode.Throughput)
    @OutputTimeUnit(TimeUnit.MICROSECONDS)
    public int consume(Control control, Pinned pinned) {
        if ("lockstep".equals(impl)) {
            while (ab.poll(streamOut, 0, 1) == 0) {
                if (control.stopMeasurement) {
                    return 0;
                }
                Thread.onSpinWait();
            }
            return 1;
        }
        while (agronaAb.read(copyToPong, 1) == 0) {
            if (control.stopMeasurement) {
                return 0;
            }
            Thread.onSpinWait();
        }
        return 1;
    }
}
