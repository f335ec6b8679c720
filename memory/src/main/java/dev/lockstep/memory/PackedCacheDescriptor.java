package dev.lockstep.memory;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;

import java.util.Map;
import java.util.zip.CRC32C;

/**
 * A packed-weights cache file: a model's weights in the layout the kernels run on, written after a load that
 * had to repack (or quantize) them, and mapped directly by later loads with the same key (as llama.cpp maps a
 * GGUF file), so those do no repacking at all.
 *
 * <pre>
 * offset 0   8 bytes  magic "LSPACK01"
 *        8   8 bytes  header length H (little-endian u64)
 *       16   H bytes  header JSON, space-padded: {"key": str, "entries": [{"name": str, "offset": u64, "bytes": u64,
 *                     "crc32c": u32, "scale": f32}, ...]}; offsets are absolute, 64-byte aligned; scale is the
 *                     matrix's tensor scale (NVFP4 weight_scale_2, 1 otherwise)
 *       ...           entry data
 * </pre>
 * The key names everything the bytes depend on (checkpoint files and their sizes and times, config, layout,
 * kernels, load options); a file whose key, sizes or checksums do not match is not used.
 */
public final class PackedCacheDescriptor {
    public static final byte[] MAGIC = "LSPACK01".getBytes(StandardCharsets.US_ASCII);
    public static final long ALIGNMENT = 64;

    /** One cached allocation. */
    public record Entry(String name, long offset, long bytes, int crc32c, float tensorScale) {
    }

    private PackedCacheDescriptor() {
    }

    /** CRC32C of a segment (hardware-accelerated; gigabytes per second). */
    public static int crc32c(MemorySegment s) {
        CRC32C crc = new CRC32C();
        long chunk = 1 << 26;
        for (long off = 0; off < s.byteSize(); off += chunk) {
            crc.update(s.asSlice(off, Math.min(chunk, s.byteSize() - off)).asByteBuffer());
        }
        return (int) crc.getValue();
    }

    /** Writes {@code segments} (name to bytes, in order) under {@code key} to {@code file}, via a temporary file and a rename. */
    public static void write(Path file, String key, Map<String, MemorySegment> segments, Map<String, Float> scales) {
        ObjectNode header = Json.MAPPER.createObjectNode();
        header.put("key", key);
        ArrayNode entries = header.putArray("entries");
        // the header's size depends on the offsets, which depend on its size: reserve generously
        long headerBytes = 4096 + 256L * segments.size();
        long offset = align(16 + headerBytes);
        for (Map.Entry<String, MemorySegment> e : segments.entrySet()) {
            entries.addObject().put("name", e.getKey()).put("offset", offset).put("bytes", e.getValue().byteSize())
                    .put("crc32c", crc32c(e.getValue())).put("scale", scales.getOrDefault(e.getKey(), 1f));
            offset = align(offset + e.getValue().byteSize());
        }
        byte[] json = header.toString().getBytes(StandardCharsets.UTF_8);
        if (json.length > headerBytes) {
            throw new IllegalStateException("packed cache header too large: " + json.length);
        }
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp-" + ProcessHandle.current().pid());
        try {
            Files.createDirectories(file.toAbsolutePath().getParent());
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                ByteBuffer head = ByteBuffer.allocate((int) (16 + headerBytes)).order(ByteOrder.LITTLE_ENDIAN);
                head.put(MAGIC).putLong(headerBytes).put(json);
                while (head.hasRemaining()) {
                    head.put((byte) ' ');
                }
                head.flip();
                writeFully(ch, head, 0);
                int i = 0;
                for (MemorySegment s : segments.values()) {
                    long at = entries.get(i++).get("offset").asLong();
                    for (long off = 0; off < s.byteSize(); off += 1 << 24) {
                        writeFully(ch, s.asSlice(off, Math.min(1 << 24, s.byteSize() - off)).asByteBuffer(), at + off);
                    }
                }
                ch.truncate(offset);
            }
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            try {
                Files.deleteIfExists(tmp);
            } catch (IOException ignored) {
                // best effort
            }
            throw new UncheckedIOException(file + ": cannot write the packed-weights cache (" + e.getMessage() + ")", e);
        }
    }

    private static void writeFully(FileChannel ch, ByteBuffer b, long position) throws IOException {
        while (b.hasRemaining()) {
            position += ch.write(b, position);
        }
    }

    private static long align(long v) {
        return (v + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }

    /**
     * The entries of a mapped cache file whose key is {@code key}, or null when the file is not a cache for this
     * key (wrong magic, key, or entries outside the file). Checksums are not verified here (see {@link #crc32c}).
     */
    public static Map<String, Entry> read(MemorySegment file, String key) {
        if (file.byteSize() < 16 || MemorySegment.ofArray(MAGIC).mismatch(file.asSlice(0, 8)) != -1) {
            return null;
        }
        long headerBytes = file.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 8);
        if (headerBytes < 2 || headerBytes > file.byteSize() - 16 || headerBytes > 1 << 30) {
            return null;
        }
        try {
            JsonNode header = Json.MAPPER.readTree(new String(file.asSlice(16, headerBytes).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8).strip());
            if (header == null || !key.equals(header.path("key").asText(null))) {
                return null;
            }
            Map<String, Entry> out = new LinkedHashMap<>();
            for (JsonNode e : header.path("entries")) {
                Entry entry = new Entry(e.path("name").asText(), e.path("offset").asLong(-1), e.path("bytes").asLong(-1), e.path("crc32c").asInt(),
                        (float) e.path("scale").asDouble(Double.NaN));
                if (entry.offset() < 16 + headerBytes || entry.bytes() < 0 || entry.offset() > file.byteSize() - entry.bytes()) {
                    return null;
                }
                out.put(entry.name(), entry);
            }
            return out;
        } catch (IOException e) {
            return null;
        }
    }

}
