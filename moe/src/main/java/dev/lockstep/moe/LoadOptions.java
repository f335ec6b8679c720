package dev.lockstep.moe;

import java.util.List;

/**
 * How a model's weights are prepared at load.
 *
 * @param quantizeNvfp4  quantize dense (bf16/f16/f32) Linear weights to NVFP4 at load with {@link Nvfp4Recipe}
 *                       (weights already NVFP4 in the checkpoint are loaded as they are either way)
 * @param quantizeLmHead include {@code lm_head} (off by default, as ModelOpt)
 * @param exclude        extra module patterns kept dense ({@link Nvfp4Recipe#matches})
 * @param progress       receives loading progress (bytes copied of the total)
 * @param cacheDir       directory of packed-weights caches, or null for none (see {@link #withCache})
 */
public record LoadOptions(boolean quantizeNvfp4, boolean quantizeLmHead, List<String> exclude, dev.lockstep.memory.Progress progress,
                          java.nio.file.Path cacheDir) {
    public static final LoadOptions DEFAULT = new LoadOptions(false, false, List.of());

    public LoadOptions {
        exclude = List.copyOf(exclude);
        if (progress == null) {
            throw new IllegalArgumentException("progress must not be null (use Progress.NONE)");
        }
    }

    public LoadOptions(boolean quantizeNvfp4, boolean quantizeLmHead, List<String> exclude) {
        this(quantizeNvfp4, quantizeLmHead, exclude, dev.lockstep.memory.Progress.NONE, null);
    }

    /** These options reporting load progress (bytes of checkpoint data copied) to {@code progress}. */
    public LoadOptions withProgress(dev.lockstep.memory.Progress progress) {
        return new LoadOptions(quantizeNvfp4, quantizeLmHead, exclude, progress, cacheDir);
    }

    /**
     * These options with a packed-weights cache in {@code dir} (null: none): the first load writes the weights
     * in the kernels' layout there, later loads with the same checkpoint, kernels and options map that file
     * instead of repacking ({@link dev.lockstep.memory.PackedCacheDescriptor}).
     */
    public LoadOptions withCache(java.nio.file.Path dir) {
        return new LoadOptions(quantizeNvfp4, quantizeLmHead, exclude, progress, dir);
    }

    public Nvfp4Recipe recipe() {
        return new Nvfp4Recipe(quantizeLmHead, exclude);
    }
}
