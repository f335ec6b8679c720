package dev.lockstep.moe;

import dev.lockstep.kernels.KernelProvider;
import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.Checkpoint;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.moe.families.DeepseekV3Family;
import dev.lockstep.moe.families.GptOssFamily;
import dev.lockstep.moe.families.GraniteMoeFamily;
import dev.lockstep.moe.families.MixtralFamily;
import dev.lockstep.moe.families.OlmoeFamily;
import dev.lockstep.moe.families.Qwen2MoeFamily;
import dev.lockstep.moe.qwen3.Qwen3MoeFamily;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The families Lockstep can run, by {@code model_type}. */
public final class ModelFamilies {
    private static final Map<String, ModelFamily> FAMILIES = new LinkedHashMap<>();

    static {
        for (ModelFamily f : List.<ModelFamily>of(new Qwen3MoeFamily(), new MixtralFamily(), new Qwen2MoeFamily(), new OlmoeFamily(),
                new GraniteMoeFamily(), new GptOssFamily(), new DeepseekV3Family())) {
            FAMILIES.put(f.modelType(), f);
        }
    }

    private ModelFamilies() {
    }

    public static List<String> supported() {
        return List.copyOf(FAMILIES.keySet());
    }

    public static ModelFamily forType(String modelType, Path configFile) {
        ModelFamily f = FAMILIES.get(modelType);
        if (f == null) {
            throw new ConfigException(configFile + ": unsupported architecture '" + modelType + "' (supported: "
                    + String.join(", ", FAMILIES.values().stream().map(x -> x.modelType() + " (" + x.architecture() + ")").toList()) + ")");
        }
        return f;
    }

    /** Loads the model in {@code directory} (config.json + safetensors) with the default kernels. */
    public static CausalLm load(Path directory, WorkerPool pool) {
        return load(directory, KernelProvider.get(), pool);
    }

    public static CausalLm load(Path directory, Kernels kernels, WorkerPool pool) {
        return load(readConfig(directory), kernels, pool);
    }

    /** The config.json of the model directory {@code directory}, after checking that it is a directory. */
    public static ModelConfigJson readConfig(Path directory) {
        if (!Files.exists(directory)) {
            throw new LockstepException(directory + ": model directory does not exist");
        }
        if (!Files.isDirectory(directory)) {
            throw new LockstepException(directory + ": is a file, not a model directory (give the directory that holds config.json)");
        }
        return ModelConfigJson.read(directory.resolve("config.json"));
    }

    /** Loads the model whose config.json is {@code config} (already read, e.g. by a caller that needed a value). */
    public static CausalLm load(ModelConfigJson config, Kernels kernels, WorkerPool pool) {
        return load(config, kernels, pool, LoadOptions.DEFAULT);
    }

    /** As {@link #load(ModelConfigJson, Kernels, WorkerPool)}, preparing the weights as {@code options} say. */
    public static CausalLm load(ModelConfigJson config, Kernels kernels, WorkerPool pool, LoadOptions options) {
        CheckpointQuantization.check(config);
        ModelFamily family = forType(config.requireString("model_type"), config.file());
        Path directory = config.file().toAbsolutePath().getParent();
        if (config.file().getParent() != null) {
            directory = config.file().getParent(); // as the caller named it, for messages
        }
        try (Checkpoint checkpoint = Checkpoint.open(directory)) {
            return family.load(config, checkpoint, kernels, pool, options);
        }
    }
}
