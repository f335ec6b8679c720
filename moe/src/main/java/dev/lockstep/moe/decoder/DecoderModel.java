package dev.lockstep.moe.decoder;

import dev.lockstep.interconnect.schedule.Schedule;
import dev.lockstep.interconnect.schedule.ScheduleExecutor;
import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.TierPlacement;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ExecutionPlan;
import dev.lockstep.memory.KvPagePool;
import dev.lockstep.memory.MemoryTier;
import dev.lockstep.moe.ForwardBatch;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.NonFiniteException;
import dev.lockstep.moe.ModelSummary;
import dev.lockstep.moe.block.AttentionBlock;
import dev.lockstep.moe.block.Compute;
import dev.lockstep.moe.block.DenseMlpBlock;
import dev.lockstep.moe.block.FeedForward;
import dev.lockstep.moe.block.MlaBlock;
import dev.lockstep.moe.block.Mixer;
import dev.lockstep.memory.KvLayout;
import dev.lockstep.moe.block.SparseMoeBlock;
import dev.lockstep.moe.kv.PagedKvCache;
import dev.lockstep.moe.kv.KvCache;

import java.util.concurrent.locks.ReentrantLock;

/**
 * The decoder forward pass every family shares (llama.cpp's shared graph builders, in Java): embedding (times
 * {@link Spec#embeddingScale}), then per layer {@code x += residualScale * attention(norm(x))} and
 * {@code x += residualScale * ffn(norm(x))}, the final norm, lm_head (logits divided by
 * {@link Spec#logitDivisor}). A family contributes its config, its tensor declarations and the blocks' parameters
 * ({@link DecoderFamily}); read a family beside its HF {@code modeling_<family>.py}. Activations are float32 rows of
 * {@code hidden} per token; weights stay in their checkpoint format (bf16, NVFP4) and are widened inside the kernels.
 */
public final class DecoderModel implements CausalLm {
    /** One decoder layer: input norm, attention, post-attention norm, feed-forward (routed experts or dense MLP). */
    public record Layer(float[] inputNorm,            // [hidden]
                        Mixer attention,                // grouped-query or latent attention
                        float[] postAttentionNorm,    // [hidden]
                        FeedForward ffn) {
    }

    /**
     * What the generic pass needs of a family: sizes, the KV shape (one for every layer), the norm epsilon and the
     * three scalings (1 for families without them; Granite's {@code embedding_multiplier},
     * {@code residual_multiplier} and {@code logits_scaling}).
     */
    public record Spec(int hiddenSize, int vocabSize, int nLayers, KvLayout kv, float rmsNormEps,
                       float embeddingScale, float residualScale, float logitDivisor, int maxPositionEmbeddings) {
    }

    private final Spec config;
    private final WeightMatrix embed;  // [vocab, hidden]
    private final Layer[] layers;
    private final float[] finalNorm;   // [hidden]
    private final WeightMatrix lmHead; // [vocab, hidden]
    private final Compute compute;
    private final TierPlacement packedWeights;
    private final ModelSummary summary;
    private final java.util.List<WeightMatrix> matrices;
    /** Serializes forwards: the blocks share task objects, RoPE tables and the worker pool. */
    private final ReentrantLock forwardLock = new ReentrantLock();
    private boolean closed; // guarded by forwardLock
    /** Attention-FFN disaggregation's workers and schedules, or null (colocated). */
    private final DisaggregatedSteps disaggregated;

    public DecoderModel(Spec config, WeightMatrix embed, Layer[] layers, float[] finalNorm, WeightMatrix lmHead,
                  Compute compute, TierPlacement packedWeights, ModelSummary summary, java.util.List<WeightMatrix> matrices) {
        this.matrices = matrices;
        this.config = config;
        this.embed = embed;
        this.layers = layers;
        this.finalNorm = finalNorm;
        this.lmHead = lmHead;
        this.compute = compute;
        this.packedWeights = packedWeights;
        this.summary = summary;
        this.disaggregated = compute.plan().isDisaggregated() ? new DisaggregatedSteps(this, compute, compute.plan()) : null;
    }

    static final class State implements ForwardState {
        int capacity;
        float[] x, xb, branch;
        final ForwardBatch batch = new ForwardBatch(1);
        final AttentionBlock.Scratch attention = new AttentionBlock.Scratch();
        final MlaBlock.Scratch mla = new MlaBlock.Scratch();
        final SparseMoeBlock.Scratch moe = new SparseMoeBlock.Scratch();
        final DenseMlpBlock.Scratch mlp = new DenseMlpBlock.Scratch();

        State(int capacity, int hidden) {
            ensure(capacity, hidden);
        }

        void ensure(int n, int hidden) {
            if (n > capacity) {
                capacity = n;
                x = new float[n * hidden + dev.lockstep.moe.block.Compute.OUTPUT_PAD];
                xb = new float[n * hidden + dev.lockstep.moe.block.Compute.OUTPUT_PAD];
                branch = new float[n * hidden + dev.lockstep.moe.block.Compute.OUTPUT_PAD];
            }
        }

        @Override
        public int capacityTokens() {
            return capacity;
        }

        @Override
        public ForwardBatch batch() {
            return batch;
        }
    }

    @Override
    public ForwardState newState(int maxBatchTokens) {
        return new State(Math.max(1, maxBatchTokens), config.hiddenSize());
    }

    @Override
    public KvCache newKvCache(int capacityTokens) {
        return PagedKvCache.standalone(config.kv(), capacityTokens);
    }

    @Override
    public KvPagePool newKvPagePool(MemoryTier tier, int pages) {
        return new KvPagePool(tier, config.kv(), pages);
    }

    @Override
    public long kvBytesPerToken(int contextTokens) {
        long bytes = 0;
        for (int l = 0; l < layers.length; l++) {
            int window = layers[l].attention() instanceof AttentionBlock a ? a.window() : 0;
            int positions = window > 0 ? Math.min(contextTokens, window + dev.lockstep.memory.KvBlockDescriptor.BLOCK_TOKENS - 1) : contextTokens;
            bytes += config.kv().layer(l).bytesPerPosition() * positions;
        }
        return bytes;
    }

    @Override
    public KvLayout kvLayout() {
        return config.kv();
    }

    @Override
    public long kvPageBytes() {
        return config.kv().pageBytes();
    }

    @Override
    public void forward(ForwardBatch batch, ForwardState forwardState, float[] logits, ForwardObserver observer) {
        forwardLock.lock();
        try {
            if (closed) {
                throw new IllegalStateException("model is closed");
            }
            State state = (State) forwardState;
            validate(batch, logits);
            if (disaggregated != null) {
                disaggregated.forward(batch, logits, observer);
                return;
            }
            // one compiled schedule per bucket of batch shapes: every region follows from the tokens and logits rows
            compute.beginStep(batch.size(), batch.logitsRows());
            boolean done = false;
            try {
                forwardLocked(batch, state, logits, observer);
                done = true;
            } finally {
                if (done) {
                    compute.endStep();
                } else {
                    compute.abortStep();
                }
            }
        } finally {
            forwardLock.unlock();
        }
    }

    private void validate(ForwardBatch batch, float[] logits) {
        int n = batch.size();
        if (n <= 0) {
            throw new IllegalArgumentException("forward needs at least one token, got " + n);
        }
        int h = config.hiddenSize(), vocab = config.vocabSize();
        int rows = batch.logitsRows();
        if (logits.length < (long) rows * vocab) {
            throw new IllegalArgumentException("logits buffer holds " + logits.length + " floats, " + (long) rows * vocab + " needed");
        }
        for (int t = 0; t < n; t++) {
            int token = batch.token(t);
            if (token < 0 || token >= vocab) {
                throw new IllegalArgumentException("token id " + token + " at index " + t + " is outside the vocabulary [0, " + vocab + ")");
            }
        }
        for (int q = 0; q < batch.sequences(); q++) {
            KvCache cache = batch.sequenceCache(q);
            if (!cache.layout().equals(config.kv())) {
                throw new IllegalArgumentException("KV cache shape (" + cache.layers() + " layers, " + cache.layout().layers()
                        + ") does not fit this model (" + config.kv().layers() + ")");
            }
        }
    }

    private void forwardLocked(ForwardBatch batch, State s, float[] logits, ForwardObserver observer) {
        int n = batch.size();
        int h = config.hiddenSize();
        for (int q = 0; q < batch.sequences(); q++) {
            batch.sequenceCache(q).reserve(batch.sequenceTokens(q));
        }
        s.ensure(n, h);
        ensureRope(batch);
        embed(batch, s);
        observer.onHidden(0, s.x, n, h);
        for (int l = 0; l < layers.length; l++) {
            attentionHalf(compute, l, batch, s);
            // sparse MoE (router, top-k, grouped experts) or dense MLP
            switch (layers[l].ffn()) {
                case SparseMoeBlock moe -> moe.forward(compute, l, s.xb, n, s.moe, s.branch, observer);
                case DenseMlpBlock mlp -> mlp.forward(compute, s.xb, n, s.mlp, s.branch);
            }
            ffnResidual(compute, l, batch, s);
            if (l < layers.length - 1) {
                observer.onHidden(l + 1, s.x, n, h);
            }
        }
        head(compute, batch, s, logits, observer);
        for (int q = 0; q < batch.sequences(); q++) {
            batch.sequenceCache(q).commit(batch.sequenceTokens(q));
        }
    }

    /** RoPE tables long enough for the batch's positions (a no-op once they are). */
    void ensureRope(ForwardBatch batch) {
        for (Layer layer : layers) {
            layer.attention().ensureRope(batch.maxPosition() + 1);
        }
    }

    /** {@code s.x} = the batch's token embeddings (times the embedding scale). */
    void embed(ForwardBatch batch, State s) {
        int n = batch.size(), h = config.hiddenSize();
        for (int t = 0; t < n; t++) {
            embed.rowToFloat(batch.token(t), s.x, t * h);
        }
        if (config.embeddingScale() != 1f) {
            for (int i = 0; i < n * h; i++) {
                s.x[i] *= config.embeddingScale();
            }
        }
    }

    /**
     * Layer {@code l} up to its feed-forward's input: input norm, attention (qkv, q/k norm, RoPE, append to each
     * token's cache, causal attention, o_proj), the residual add, the post-attention norm into {@code s.xb}.
     */
    void attentionHalf(Compute c, int l, ForwardBatch batch, State s) {
        int n = batch.size(), h = config.hiddenSize();
        Layer layer = layers[l];
        Kernels kn = c.kernels();
        kn.rmsNormRows(s.x, 0, h, n, layer.inputNorm(), config.rmsNormEps(), s.xb, 0, h, h);
        switch (layer.attention()) {
            case AttentionBlock a -> a.forward(c, l, s.xb, batch, s.attention, s.branch);
            case MlaBlock m -> m.forward(c, l, s.xb, batch, s.mla, s.branch);
        }
        kn.axpy(config.residualScale(), s.branch, 0, s.x, 0, n * h);
        kn.rmsNormRows(s.x, 0, h, n, layer.postAttentionNorm(), config.rmsNormEps(), s.xb, 0, h, h);
    }

    /** After layer {@code l}'s feed-forward wrote {@code s.branch}: the residual add and the non-finite check. */
    void ffnResidual(Compute c, int l, ForwardBatch batch, State s) {
        int n = batch.size(), h = config.hiddenSize();
        c.kernels().axpy(config.residualScale(), s.branch, 0, s.x, 0, n * h);
        NonFiniteException.check(s.x, n, h, batch, false, l);
    }

    /** The final norm and lm_head, for the tokens that want logits (rows gathered when they are not all or one). */
    void head(Compute c, ForwardBatch batch, State s, float[] logits, ForwardObserver observer) {
        int n = batch.size(), h = config.hiddenSize(), vocab = config.vocabSize();
        int rows = batch.logitsRows();
        c.kernels().rmsNormRows(s.x, 0, h, n, finalNorm, config.rmsNormEps(), s.xb, 0, h, h);
        observer.onHidden(layers.length, s.xb, n, h);
        if (rows == n) {
            c.matmul(lmHead, s.xb, n, logits);
        } else if (rows == 1) {
            c.matmul(lmHead, s.xb, batch.logitsToken(0) * h, 1, logits);
        } else if (rows > 1) {
            for (int r = 0; r < rows; r++) {
                System.arraycopy(s.xb, batch.logitsToken(r) * h, s.branch, r * h, h);
            }
            c.matmul(lmHead, s.branch, rows, logits);
        }
        if (config.logitDivisor() != 1f) {
            for (int i = 0; i < rows * vocab; i++) {
                logits[i] /= config.logitDivisor();
            }
        }
        NonFiniteException.check(logits, rows, vocab, batch, true, NonFiniteException.LOGITS);
    }

    /**
     * Disaggregated: moves the experts' ranges between FFN workers now if the rows routed since the last check loaded
     * them above {@code threshold} x the mean (the engine checks every few hundred steps at 1.25 by itself); returns
     * whether they moved. Between steps only (it takes the forward lock).
     */
    public boolean rebalanceExperts(double threshold) {
        forwardLock.lock();
        try {
            return disaggregated != null && disaggregated.rebalance(threshold);
        } finally {
            forwardLock.unlock();
        }
    }

    /** Disaggregated: per MoE layer, FFN worker f's experts are {@code [p[layer][f], p[layer][f + 1])}; null when colocated. */
    public int[][] expertPlacement() {
        forwardLock.lock();
        try {
            return disaggregated == null ? null : disaggregated.placement();
        } finally {
            forwardLock.unlock();
        }
    }

    /** Disaggregated: the attention worker holding {@code cache}'s session, or -1 (not seen yet, or colocated). */
    public int attentionWorkerOf(KvCache cache) {
        forwardLock.lock();
        try {
            return disaggregated == null ? -1 : disaggregated.attentionWorkerOf(cache);
        } finally {
            forwardLock.unlock();
        }
    }

    /** Bytes of lm_head's weights. */
    long lmHeadBytes() {
        return lmHead.byteSize();
    }

    /** The disaggregated steps, or null (colocated). */
    DisaggregatedSteps disaggregatedSteps() {
        return disaggregated;
    }

    Layer[] layerArray() {
        return layers;
    }

    @Override
    public TierPlacement placement() {
        return packedWeights;
    }

    @Override
    public java.util.List<WeightMatrix> weightMatrices() {
        return matrices;
    }

    @Override
    public ModelSummary summary() {
        return summary;
    }

    @Override
    public long weightBytesPerToken() {
        long bytes = lmHead.byteSize() + (long) embed.cols() * (embed.byteSize() / ((long) embed.rows() * embed.cols()));
        for (Layer l : layers) {
            bytes += l.attention().weightBytesPerToken() + l.ffn().weightBytesPerToken();
        }
        return bytes;
    }

    @Override
    public int vocabSize() {
        return config.vocabSize();
    }

    @Override
    public int maxPositions() {
        return config.maxPositionEmbeddings();
    }

    @Override
    public ExecutionPlan executionPlan() {
        return compute.plan();
    }

    @Override
    public ScheduleExecutor scheduleExecutor() {
        return disaggregated != null ? disaggregated.executor() : compute.scheduleExecutor();
    }

    /** Disaggregated: the schedule of one session's batch of {@code tokens} tokens (logits rows change nothing there). */
    @Override
    public Schedule schedule(int tokens, int logitsRows) {
        return disaggregated != null ? disaggregated.schedule(tokens) : compute.schedule(tokens, logitsRows);
    }

    @Override
    public dev.lockstep.moe.DisaggregationStats disaggregationStats() {
        forwardLock.lock();
        try {
            return disaggregated == null ? null : disaggregated.stats();
        } finally {
            forwardLock.unlock();
        }
    }

    /** The compute this model runs on (its execution plan, the schedule executor and compiled schedules when scheduled). */
    public Compute compute() {
        return compute;
    }

    /** The generic shape of this model (its family's config reduced to what the generic pass reads). */
    public Spec spec() {
        return config;
    }

    /** The layers, read-only (for tests and tools that inspect blocks). */
    public java.util.List<Layer> layers() {
        return java.util.List.of(layers);
    }

    /** Waits for a running forward, then frees the weights; later forwards fail. A second close does nothing. */
    @Override
    public void close() {
        forwardLock.lock();
        try {
            if (!closed) {
                closed = true;
                try {
                    if (disaggregated != null) {
                        disaggregated.close();
                    }
                    compute.close();
                } finally {
                    packedWeights.close();
                }
            }
        } finally {
            forwardLock.unlock();
        }
    }
}
