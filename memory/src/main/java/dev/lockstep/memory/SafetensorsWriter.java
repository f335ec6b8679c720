package dev.lockstep.memory;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Writes one safetensors file in a single streaming pass (layout in {@link SafetensorsDescriptor}): the tensor
 * list is declared up front, so the header (padded with spaces to a multiple of 8 bytes) is written first and
 * each tensor's bytes follow in declaration order, back to back. Nothing is buffered beyond one tensor: a
 * multi-gigabyte shard needs no more memory than its largest tensor. {@link #close()} refuses a file whose
 * tensors were not all written.
 */
public final class SafetensorsWriter implements AutoCloseable {
    /** One declared tensor. */
    public record Entry(String name, DType dtype, long[] shape) {
        public Entry {
            shape = shape.clone();
        }

        public long byteSize() {
            long n = dtype.sizeBytes();
            for (long d : shape) {
                n = Math.multiplyExact(n, d);
            }
            return n;
        }
    }

    private final Path path;
    private final FileChannel channel;
    private final List<Entry> entries;
    private int next;

    private SafetensorsWriter(Path path, FileChannel channel, List<Entry> entries) {
        this.path = path;
        this.channel = channel;
        this.entries = entries;
    }

    /** Creates {@code path} (which must not exist) and writes the header for {@code entries}. */
    public static SafetensorsWriter create(Path path, List<Entry> entries, Map<String, String> metadata) {
        ObjectNode header = Json.MAPPER.createObjectNode();
        if (!metadata.isEmpty()) {
            ObjectNode meta = header.putObject("__metadata__");
            metadata.forEach(meta::put);
        }
        long offset = 0;
        for (Entry e : entries) {
            ObjectNode t = header.putObject(e.name());
            t.put("dtype", e.dtype().safetensorsName());
            ArrayNode shape = t.putArray("shape");
            for (long d : e.shape()) {
                shape.add(d);
            }
            long end = offset + e.byteSize();
            t.putArray("data_offsets").add(offset).add(end);
            offset = end;
        }
        byte[] json = header.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) & ~7;
        ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
        head.putLong(padded).put(json);
        while (head.hasRemaining()) {
            head.put((byte) ' ');
        }
        head.flip();
        try {
            FileChannel ch = FileChannel.open(path, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
            try {
                writeFully(ch, head);
            } catch (IOException | RuntimeException e) {
                ch.close();
                throw e;
            }
            return new SafetensorsWriter(path, ch, List.copyOf(entries));
        } catch (IOException e) {
            throw new UncheckedIOException(path + ": cannot write (" + e.getMessage() + ")", e);
        }
    }

    /** Writes the next declared tensor's bytes ({@code data} must be exactly its size). */
    public void write(String name, MemorySegment data) {
        if (next >= entries.size() || !entries.get(next).name().equals(name)) {
            throw new IllegalStateException(path + ": expected tensor " + (next < entries.size() ? "'" + entries.get(next).name() + "'" : "none")
                    + " next, got '" + name + "'");
        }
        Entry e = entries.get(next);
        if (data.byteSize() != e.byteSize()) {
            throw new IllegalArgumentException(path + ": tensor '" + name + "' needs " + e.byteSize() + " bytes, got " + data.byteSize());
        }
        try {
            long chunk = 1 << 24;
            for (long off = 0; off < data.byteSize(); off += chunk) {
                writeFully(channel, data.asSlice(off, Math.min(chunk, data.byteSize() - off)).asByteBuffer());
            }
        } catch (IOException ex) {
            throw new UncheckedIOException(path + ": write failed (" + ex.getMessage() + ")", ex);
        }
        next++;
    }

    public void write(String name, byte[] data) {
        write(name, MemorySegment.ofArray(data));
    }

    private static void writeFully(FileChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    @Override
    public void close() {
        try {
            channel.close();
        } catch (IOException e) {
            throw new UncheckedIOException(path + ": close failed (" + e.getMessage() + ")", e);
        }
        if (next != entries.size()) {
            throw new IllegalStateException(path + ": " + (entries.size() - next) + " declared tensors were not written");
        }
    }
}
