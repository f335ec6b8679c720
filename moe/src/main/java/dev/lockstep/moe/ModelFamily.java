package dev.lockstep.moe;

import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.Checkpoint;

/**
 * One model family (ggml's "arch"): reads its hyper-parameters from config.json, declares every tensor's
 * expected shape, and builds a forward pass from the shared blocks in {@code dev.lockstep.moe.block}.
 * Adding a family is one {@link dev.lockstep.moe.decoder.DecoderFamily} (its config and layer declarations) and one
 * line in {@link ModelFamilies}.
 */
public interface ModelFamily {
    /** {@code model_type} in config.json. */
    String modelType();

    /** The {@code architectures} name users see in config.json (e.g. {@code MixtralForCausalLM}). */
    String architecture();

    /**
     * Builds the model over an open checkpoint. Errors name the family, the key or tensor and what was
     * expected. The model copies what it needs out of the checkpoint (packed weights, embeddings, norms) and
     * keeps no reference to it: the caller closes the checkpoint afterwards, so a checkpoint file changed
     * after loading cannot affect (or crash) a running model. On failure the family frees what it took,
     * {@code Error}s included.
     */
    CausalLm load(ModelConfigJson config, Checkpoint checkpoint, Kernels kernels, WorkerPool pool, LoadOptions options);

    /** {@link #load(ModelConfigJson, Checkpoint, Kernels, WorkerPool, LoadOptions)} with the weights as stored. */
    default CausalLm load(ModelConfigJson config, Checkpoint checkpoint, Kernels kernels, WorkerPool pool) {
        return load(config, checkpoint, kernels, pool, LoadOptions.DEFAULT);
    }
}
