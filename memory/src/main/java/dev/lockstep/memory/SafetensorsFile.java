package dev.lockstep.memory;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One safetensors file, mmapped read-only through FFM. Tensor bytes are slices of the mapping: nothing is
 * copied onto the Java heap. Every field of the header is validated before a slice is handed out
 * (see {@link SafetensorsDescriptor}).
 */
public final class SafetensorsFile implements AutoCloseable {
    private static final ObjectMapper JSON = dev.lockstep.memory.Json.MAPPER;

    private final Path path;
    private final Arena arena;
    private final MemorySegment mapping;
    private final Map<String, TensorInfo> tensors;
    private final Map<String, String> metadata;

    private SafetensorsFile(Path path, Arena arena, MemorySegment mapping, Map<String, TensorInfo> tensors,
                            Map<String, String> metadata) {
        this.path = path;
        this.arena = arena;
        this.mapping = mapping;
        this.tensors = tensors;
        this.metadata = metadata;
    }

    /** Maps and validates {@code path}. The mapping lives until {@link #close()}; it may be read from any thread. */
    public static SafetensorsFile open(Path path) {
        Arena arena = Arena.ofShared();
        try {
            MemorySegment mapping;
            try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
                mapping = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size(), arena);
            } catch (NoSuchFileException e) {
                throw new CheckpointException(CheckpointException.Problem.MISSING_FILE, path + ": no such file");
            } catch (IOException e) {
                throw new CheckpointException(CheckpointException.Problem.MISSING_FILE, path + ": cannot read (" + e.getMessage() + ")", e);
            }
            long fileSize = mapping.byteSize();
            if (fileSize < SafetensorsDescriptor.HEADER_OFFSET) {
                SafetensorsDescriptor.checkHeaderLength(path, fileSize, 0);
            }
            long headerLength = SafetensorsDescriptor.headerLength(mapping);
            SafetensorsDescriptor.checkHeaderLength(path, fileSize, headerLength);
            long dataOffset = SafetensorsDescriptor.dataSectionOffset(headerLength);
            byte[] headerBytes = mapping.asSlice(SafetensorsDescriptor.HEADER_OFFSET, headerLength).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
            Map<String, String> metadata = new LinkedHashMap<>();
            Map<String, TensorInfo> tensors = parseHeader(path, headerBytes, dataOffset, fileSize - dataOffset, metadata);
            return new SafetensorsFile(path, arena, mapping, Collections.unmodifiableMap(tensors), Collections.unmodifiableMap(metadata));
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    private static Map<String, TensorInfo> parseHeader(Path path, byte[] headerBytes, long dataOffset, long dataBytes,
                                                       Map<String, String> metadataOut) {
        String headerText = SafetensorsDescriptor.headerJson(path, headerBytes);
        JsonNode root;
        try {
            root = JSON.readTree(headerText);
        } catch (JsonProcessingException e) {
            throw new CheckpointException(CheckpointException.Problem.HEADER_JSON,
                    path + ": header is not valid JSON (" + e.getOriginalMessage() + ")", e);
        }
        if (!(root instanceof ObjectNode obj)) {
            throw new CheckpointException(CheckpointException.Problem.HEADER_JSON, path + ": header is not a JSON object");
        }
        Map<String, TensorInfo> tensors = new LinkedHashMap<>();
        List<long[]> ranges = new ArrayList<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = obj.properties().iterator(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String name = e.getKey();
            JsonNode node = e.getValue();
            if (name.equals(SafetensorsDescriptor.METADATA_KEY)) {
                if (node.isObject()) {
                    node.properties().forEach(m -> metadataOut.put(m.getKey(), m.getValue().asText()));
                }
                continue;
            }
            TensorInfo info = parseEntry(path, name, node, dataOffset, dataBytes);
            tensors.put(name, info);
            ranges.add(new long[]{info.offsetBytes() - dataOffset, info.offsetBytes() - dataOffset + info.lengthBytes(), tensors.size() - 1});
        }
        checkTiling(path, ranges, new ArrayList<>(tensors.keySet()), dataBytes);
        return tensors;
    }

    private static TensorInfo parseEntry(Path path, String name, JsonNode node, long dataOffset, long dataBytes) {
        JsonNode dtypeNode = node.get("dtype");
        JsonNode shapeNode = node.get("shape");
        JsonNode offsetsNode = node.get("data_offsets");
        if (!node.isObject() || dtypeNode == null || !dtypeNode.isTextual() || shapeNode == null || !shapeNode.isArray()
                || offsetsNode == null || !offsetsNode.isArray() || offsetsNode.size() != 2) {
            throw new CheckpointException(CheckpointException.Problem.HEADER_JSON,
                    path + ": tensor '" + name + "' entry must be {\"dtype\": str, \"shape\": [int...], \"data_offsets\": [begin, end]}, got " + node);
        }
        DType dtype;
        try {
            dtype = DType.fromSafetensors(dtypeNode.asText());
        } catch (IllegalArgumentException e) {
            throw new CheckpointException(CheckpointException.Problem.UNSUPPORTED_DTYPE, path + ": tensor '" + name + "': " + e.getMessage());
        }
        long[] shape = new long[shapeNode.size()];
        for (int i = 0; i < shape.length; i++) {
            JsonNode d = shapeNode.get(i);
            if (!d.canConvertToLong() || !d.isIntegralNumber()) {
                throw new CheckpointException(CheckpointException.Problem.HEADER_JSON,
                        path + ": tensor '" + name + "' shape " + shapeNode + " is not a list of integers");
            }
            shape[i] = d.asLong();
        }
        JsonNode b = offsetsNode.get(0), en = offsetsNode.get(1);
        if (!b.isIntegralNumber() || !en.isIntegralNumber() || !b.canConvertToLong() || !en.canConvertToLong()) {
            throw new CheckpointException(CheckpointException.Problem.HEADER_JSON,
                    path + ": tensor '" + name + "' data_offsets " + offsetsNode + " are not two integers");
        }
        long begin = b.asLong(), end = en.asLong();
        SafetensorsDescriptor.checkTensorRange(path, name, dtype, shape, begin, end, dataBytes);
        return new TensorInfo(name, dtype, shape, path, dataOffset + begin, end - begin);
    }

    /**
     * The tensors' byte ranges must tile the data section exactly, as the reference reader requires: sorted by
     * offset, each begins where the previous ended, the first at 0 and the last at the end of the file. A gap,
     * an overlap or trailing bytes mean the header and the data disagree (a header length off by a few bytes
     * shifts every tensor and would otherwise load misaligned weights).
     */
    private static void checkTiling(Path path, List<long[]> ranges, List<String> names, long dataBytes) {
        ranges.sort(Comparator.comparingLong((long[] r) -> r[0]).thenComparingLong(r -> r[1]));
        long expected = 0;
        String previous = null;
        for (long[] r : ranges) {
            String name = names.get((int) r[2]);
            if (r[0] < expected) {
                throw new CheckpointException(CheckpointException.Problem.OVERLAP,
                        path + ": tensors '" + previous + "' (ends at data offset " + expected + ") and '" + name + "' ["
                                + r[0] + ", " + r[1] + ") overlap");
            }
            if (r[0] > expected) {
                throw new CheckpointException(CheckpointException.Problem.NOT_TILED,
                        path + ": " + (r[0] - expected) + " unaccounted bytes at data offset " + expected + ", before tensor '"
                                + name + "' (tensors must tile the data section exactly; corrupt header or header length)");
            }
            expected = r[1];
            previous = name;
        }
        if (expected != dataBytes) {
            throw new CheckpointException(CheckpointException.Problem.NOT_TILED,
                    path + ": the tensors end at data offset " + expected + " but the data section holds " + dataBytes
                            + " bytes (tensors must tile the data section exactly; corrupt header or header length)");
        }
    }

    public Path path() {
        return path;
    }

    public Map<String, TensorInfo> tensors() {
        return tensors;
    }

    public Map<String, String> metadata() {
        return metadata;
    }

    public boolean contains(String name) {
        return tensors.containsKey(name);
    }

    /** The bytes of {@code name}, a read-only slice of the mapping. */
    public TensorView view(String name) {
        TensorInfo info = tensors.get(name);
        if (info == null) {
            throw new CheckpointException(CheckpointException.Problem.MISSING_TENSOR, path + ": no tensor '" + name + "'");
        }
        return new TensorView(info, mapping.asSlice(info.offsetBytes(), info.lengthBytes()).asReadOnly());
    }

    @Override
    public void close() {
        arena.close();
    }
}
