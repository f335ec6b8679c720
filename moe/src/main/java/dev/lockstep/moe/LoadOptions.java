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
 * @param sramBytes      the SRAM tier of the placement plan ({@link dev.lockstep.memory.TierPlacement}): -1 for the
 *                       machine's last-level cache size, 0 for none
 * @param hbmBytes       the HBM tier for the weights: -1 for the machine's physical memory
 * @param execution      how forwards run on workers: fork-join on the given pool, or a compiled schedule
 */
public record LoadOptions(boolean quantizeNvfp4, boolean quantizeLmHead, List<String> exclude, dev.lockstep.memory.Progress progress,
                          java.nio.file.Path cacheDir, long sramBytes, long hbmBytes, ExecutionPlan execution) {
    public static final LoadOptions DEFAULT = new LoadOptions(false, false, List.of());

    public LoadOptions {
        exclude = List.copyOf(exclude);
        if (execution == null) {
            throw new IllegalArgumentException("execution must not be null (use ExecutionPlan.FORK_JOIN)");
        }
        if (progress == null) {
            throw new IllegalArgumentException("progress must not be null (use Progress.NONE)");
        }
        if (sramBytes < -1 || hbmBytes < -1 || hbmBytes == 0) {
            throw new IllegalArgumentException("tier sizes: SRAM >= 0 (or -1: the machine's), HBM > 0 (or -1); got " + sramBytes + ", " + hbmBytes);
        }
    }

    public LoadOptions(boolean quantizeNvfp4, boolean quantizeLmHead, List<String> exclude) {
        this(quantizeNvfp4, quantizeLmHead, exclude, dev.lockstep.memory.Progress.NONE, null, -1, -1, ExecutionPlan.FORK_JOIN);
    }

    /** These options reporting load progress (bytes of checkpoint data copied) to {@code progress}. */
    public LoadOptions withProgress(dev.lockstep.memory.Progress progress) {
        return new LoadOptions(quantizeNvfp4, quantizeLmHead, exclude, progress, cacheDir, sramBytes, hbmBytes, execution);
    }

    /** These options with tiers of {@code sramBytes} and {@code hbmBytes} for the weights (-1: the machine's). */
    public LoadOptions withTiers(long sramBytes, long hbmBytes) {
        return new LoadOptions(quantizeNvfp4, quantizeLmHead, exclude, progress, cacheDir, sramBytes, hbmBytes, execution);
    }

    /**
     * These options with a packed-weights cache in {@code dir} (null: none): the first load writes the weights
     * in the kernels' layout there, later loads with the same checkpoint, kernels and options map that file
     * instead of repacking ({@link dev.lockstep.memory.PackedCacheDescriptor}).
     */
    public LoadOptions withCache(java.nio.file.Path dir) {
        return new LoadOptions(quantizeNvfp4, quantizeLmHead, exclude, progress, dir, sramBytes, hbmBytes, execution);
    }

    /**
     * A new placement plan with these tiers: SRAM of {@code sramBytes} (-1: the last-level cache), HBM of
     * {@code hbmBytes} (-1: the machine's physical memory, or 64 GiB when unknown).
     */
    public dev.lockstep.memory.TierPlacement placement() {
        long sram = sramBytes >= 0 ? sramBytes : dev.lockstep.memory.TierPlacement.lastLevelCacheBytes();
        long physical = dev.lockstep.memory.TierPlacement.physicalMemoryBytes();
        long hbm = hbmBytes > 0 ? hbmBytes : physical > 0 ? physical : 64L << 30;
        return new dev.lockstep.memory.TierPlacement(sram, hbm);
    }

    /** These options running forwards as {@code execution} says. */
    public LoadOptions withExecution(ExecutionPlan execution) {
        return new LoadOptions(quantizeNvfp4, quantizeLmHead, exclude, progress, cacheDir, sramBytes, hbmBytes, execution);
    }

    public Nvfp4Recipe recipe() {
        return new Nvfp4Recipe(quantizeLmHead, exclude);
    }
}
