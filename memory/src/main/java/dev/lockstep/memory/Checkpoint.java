package dev.lockstep.memory;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A Hugging Face checkpoint directory: either one {@code model.safetensors} or shards listed by
 * {@code model.safetensors.index.json}. All shards are mmapped; tensor lookups go to the right shard.
 * The index and the shards are cross-checked: every indexed tensor is in its shard, and no tensor
 * appears in two shards.
 */
public final class Checkpoint implements AutoCloseable {
    public static final String SINGLE_FILE = "model.safetensors";
    public static final String INDEX_FILE = "model.safetensors.index.json";

    private final Path directory;
    private final List<SafetensorsFile> files;
    private final Map<String, SafetensorsFile> byTensor;

    private Checkpoint(Path directory, List<SafetensorsFile> files, Map<String, SafetensorsFile> byTensor) {
        this.directory = directory;
        this.files = files;
        this.byTensor = byTensor;
    }

    public static Checkpoint open(Path directory) {
        if (!Files.isDirectory(directory)) {
            throw new CheckpointException(CheckpointException.Problem.MISSING_FILE, directory + ": not a directory");
        }
        Path index = directory.resolve(INDEX_FILE);
        Path single = directory.resolve(SINGLE_FILE);
        if (Files.exists(index)) {
            return openSharded(directory, index);
        }
        if (Files.exists(single)) {
            SafetensorsFile f = SafetensorsFile.open(single);
            Map<String, SafetensorsFile> byTensor = new LinkedHashMap<>();
            f.tensors().keySet().forEach(n -> byTensor.put(n, f));
            return new Checkpoint(directory, List.of(f), Collections.unmodifiableMap(byTensor));
        }
        throw new CheckpointException(CheckpointException.Problem.MISSING_FILE,
                directory + ": neither " + SINGLE_FILE + " nor " + INDEX_FILE + " found");
    }

    private static Checkpoint openSharded(Path directory, Path index) {
        JsonNode weightMap;
        try {
            JsonNode root = Json.MAPPER.readTree(Files.readString(index));
            weightMap = root == null ? null : root.get("weight_map");
        } catch (JsonProcessingException e) {
            throw new CheckpointException(CheckpointException.Problem.HEADER_JSON,
                    index + ": not valid JSON (" + e.getOriginalMessage() + ")", e);
        } catch (IOException e) {
            throw new CheckpointException(CheckpointException.Problem.MISSING_FILE, index + ": cannot read (" + e.getMessage() + ")", e);
        }
        if (weightMap == null || !weightMap.isObject()) {
            throw new CheckpointException(CheckpointException.Problem.HEADER_JSON, index + ": no \"weight_map\" object");
        }
        Map<String, String> tensorToShard = new TreeMap<>();
        weightMap.properties().forEach(e -> {
            if (!e.getValue().isTextual()) {
                throw new CheckpointException(CheckpointException.Problem.HEADER_JSON,
                        index + ": weight_map entry '" + e.getKey() + "' is not a file name");
            }
            tensorToShard.put(e.getKey(), e.getValue().asText());
        });
        Map<String, SafetensorsFile> shards = new LinkedHashMap<>();
        List<SafetensorsFile> opened = new ArrayList<>();
        try {
            for (String shardName : new java.util.TreeSet<>(tensorToShard.values())) {
                Path shardPath = shardPath(directory, index, shardName);
                if (!Files.exists(shardPath)) {
                    throw new CheckpointException(CheckpointException.Problem.MISSING_FILE,
                            index + " names shard " + shardName + " but " + shardPath + " does not exist");
                }
                SafetensorsFile f = SafetensorsFile.open(shardPath);
                opened.add(f);
                shards.put(shardName, f);
            }
            Map<String, SafetensorsFile> byTensor = new LinkedHashMap<>();
            for (Map.Entry<String, String> e : tensorToShard.entrySet()) {
                SafetensorsFile f = shards.get(e.getValue());
                if (!f.contains(e.getKey())) {
                    throw new CheckpointException(CheckpointException.Problem.INDEX_MISMATCH,
                            index + " puts tensor '" + e.getKey() + "' in " + e.getValue() + ", but that shard has no such tensor");
                }
                byTensor.put(e.getKey(), f);
            }
            for (SafetensorsFile f : opened) {
                for (String name : f.tensors().keySet()) {
                    SafetensorsFile owner = byTensor.get(name);
                    if (owner != f) {
                        throw new CheckpointException(CheckpointException.Problem.INDEX_MISMATCH,
                                f.path() + " holds tensor '" + name + "' which " + INDEX_FILE + " "
                                        + (owner == null ? "does not list" : "places in " + owner.path().getFileName()));
                    }
                }
            }
            return new Checkpoint(directory, List.copyOf(opened), Collections.unmodifiableMap(byTensor));
        } catch (RuntimeException | Error e) {
            opened.forEach(SafetensorsFile::close);
            throw e;
        }
    }

    /** A shard named by the index: a plain file name inside the checkpoint directory, nothing else. */
    private static Path shardPath(Path directory, Path index, String shardName) {
        boolean plain = !shardName.isEmpty() && shardName.chars().noneMatch(c -> c == '/' || c == '\\' || c == 0 || c < 0x20)
                && !shardName.equals(".") && !shardName.equals("..");
        try {
            Path p = plain ? directory.resolve(shardName).normalize() : null;
            if (p != null && p.getParent() != null && p.getParent().equals(directory.normalize())) {
                return p;
            }
        } catch (java.nio.file.InvalidPathException e) {
            // falls through to the error below
        }
        throw new CheckpointException(CheckpointException.Problem.HEADER_JSON,
                index + ": shard name '" + shardName.replaceAll("\\p{Cntrl}", "?") + "' must be a plain file name in the checkpoint directory");
    }

    public Path directory() {
        return directory;
    }

    /** All tensors in name order of the index (or the single file). */
    public List<TensorInfo> tensors() {
        List<TensorInfo> out = new ArrayList<>(byTensor.size());
        byTensor.forEach((name, f) -> out.add(f.tensors().get(name)));
        return out;
    }

    public boolean contains(String name) {
        return byTensor.containsKey(name);
    }

    public TensorView tensor(String name) {
        SafetensorsFile f = byTensor.get(name);
        if (f == null) {
            throw new CheckpointException(CheckpointException.Problem.MISSING_TENSOR,
                    directory + ": checkpoint has no tensor '" + name + "'");
        }
        return f.view(name);
    }

    public long totalBytes() {
        return byTensor.values().stream().distinct().mapToLong(f -> f.tensors().values().stream().mapToLong(TensorInfo::lengthBytes).sum()).sum();
    }

    @Override
    public void close() {
        files.forEach(SafetensorsFile::close);
    }
}
