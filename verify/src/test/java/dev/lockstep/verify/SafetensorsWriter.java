package dev.lockstep.verify;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lockstep.memory.SafetensorsFile;
import dev.lockstep.memory.TensorInfo;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/** Test helper: writes safetensors files (valid or deliberately broken) from named byte blobs. */
final class SafetensorsWriter {
    record Entry(String dtype, long[] shape, byte[] data) {
    }

    private final Map<String, Entry> entries = new LinkedHashMap<>();

    static SafetensorsWriter copyOf(Path file) {
        SafetensorsWriter w = new SafetensorsWriter();
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            for (TensorInfo t : f.tensors().values()) {
                w.put(t.name(), t.dtype().safetensorsName(), t.shape(), f.view(t.name()).data().toArray(ValueLayout.JAVA_BYTE));
            }
        }
        return w;
    }

    SafetensorsWriter put(String name, String dtype, long[] shape, byte[] data) {
        entries.put(name, new Entry(dtype, shape, data));
        return this;
    }

    SafetensorsWriter remove(String name) {
        entries.remove(name);
        return this;
    }

    java.util.Set<String> names() {
        return entries.keySet();
    }

    Entry get(String name) {
        return entries.get(name);
    }

    /** Header JSON and data section, offsets laid out back to back. */
    byte[] bytes() {
        ObjectMapper m = new ObjectMapper();
        ObjectNode header = m.createObjectNode();
        header.putObject("__metadata__").put("format", "pt");
        ByteArrayOutputStream data = new ByteArrayOutputStream();
        for (Map.Entry<String, Entry> e : entries.entrySet()) {
            ObjectNode t = header.putObject(e.getKey());
            t.put("dtype", e.getValue().dtype());
            ArrayNode shape = t.putArray("shape");
            for (long d : e.getValue().shape()) {
                shape.add(d);
            }
            ArrayNode offsets = t.putArray("data_offsets");
            offsets.add(data.size());
            data.writeBytes(e.getValue().data());
            offsets.add(data.size());
        }
        return frame(header.toString().getBytes(StandardCharsets.UTF_8), data.toByteArray());
    }

    static byte[] frame(byte[] header, byte[] data) {
        ByteBuffer b = ByteBuffer.allocate(8 + header.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(header.length).put(header).put(data);
        return b.array();
    }

    void write(Path file) {
        try {
            Files.write(file, bytes());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
