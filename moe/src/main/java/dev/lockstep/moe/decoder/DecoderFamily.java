package dev.lockstep.moe.decoder;

import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.Rope;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.Checkpoint;
import dev.lockstep.memory.KvLayout;
import dev.lockstep.memory.TierPlacement;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.LoadOptions;
import dev.lockstep.moe.ModelConfigJson;
import dev.lockstep.moe.ModelFamily;
import dev.lockstep.moe.ModelSummary;
import dev.lockstep.moe.WeightLoader;
import dev.lockstep.moe.block.Compute;
import dev.lockstep.moe.block.SparseMoeBlock;

import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A family as declarations over the generic {@link DecoderModel}: how to read its config, and how to declare one
 * layer's tensors and blocks. Everything else (the embedding, the final norm, lm_head and tying, loading in
 * two phases, freeing on failure, the summary) is here, once. Tensor names are HF's; every family in Lockstep
 * names its embedding {@code model.embed_tokens.weight}, final norm {@code model.norm.weight} and head
 * {@code lm_head.weight}.
 *
 * @param <C> the family's config
 */
public abstract class DecoderFamily<C extends DecoderFamily.Config> implements ModelFamily {

    /** A family's parsed config: the common part, the generic pass's scalings, and what {@code inspect} prints. */
    public interface Config {
        BaseConfig base();

        /** Every key, as {@code inspect} prints it. */
        Map<String, Object> asMap();

        default float embeddingScale() {
            return 1f;
        }

        default float residualScale() {
            return 1f;
        }

        default float logitDivisor() {
            return 1f;
        }
    }

    /** Parses and validates config.json; errors name the file, the family and the key. */
    protected abstract C parse(ModelConfigJson json);

    @Override
    public abstract String architecture();

    /** Declares layer {@code l}: its tensors (through {@code w}, which checks names and shapes) and blocks. */
    protected abstract DecoderModel.Layer layer(C c, int l, WeightLoader w, Rope rope);

    /** The RoPE tables every layer shares (heads of {@code head_dim}; a family with partial rotary overrides this). */
    protected Rope rope(C c) {
        BaseConfig b = c.base();
        return b.rope().newRope(b.headDim(), b.maxPositionEmbeddings());
    }

    @Override
    public final CausalLm load(ModelConfigJson json, Checkpoint checkpoint, Kernels kernels, WorkerPool pool, LoadOptions options) {
        C c = parse(json);
        TierPlacement weights = options.placement();
        try {
            return load(c, checkpoint, kernels, pool, weights, options);
        } catch (RuntimeException | Error e) {
            weights.close();
            throw e;
        }
    }

    private CausalLm load(C c, Checkpoint checkpoint, Kernels kernels, WorkerPool pool, TierPlacement weights, LoadOptions options) {
        try (WeightLoader w = new WeightLoader(modelType(), checkpoint, kernels.tileRows(), weights, options, kernels.name())) {
            return load(c, w, kernels, pool, weights, options);
        }
    }

    private CausalLm load(C c, WeightLoader w, Kernels kernels, WorkerPool pool, TierPlacement weights, LoadOptions options) {
        BaseConfig b = c.base();
        int h = b.hiddenSize();
        Rope rope = rope(c);
        WeightMatrix embedSource = w.rowMajor("model.embed_tokens.weight", b.vocabSize(), h);
        WeightMatrix embed = w.copied(embedSource);                                              // [vocab, hidden]
        DecoderModel.Layer[] layers = new DecoderModel.Layer[b.nLayers()];
        for (int l = 0; l < b.nLayers(); l++) {
            layers[l] = layer(c, l, w, rope);
        }
        float[] finalNorm = w.vector("model.norm.weight", h);
        WeightMatrix lmHead = b.tieWordEmbeddings() && !w.has("lm_head.weight")
                ? w.packed(embedSource)
                : w.matrix("lm_head.weight", b.vocabSize(), h);                                  // [vocab, hidden]
        w.finish();
        KvLayout kv = new KvLayout(java.util.Arrays.stream(layers).map(l -> l.attention().kvLayer()).toList());
        DecoderModel.Spec spec = new DecoderModel.Spec(h, b.vocabSize(), b.nLayers(), kv, b.rmsNormEps(),
                c.embeddingScale(), c.residualScale(), c.logitDivisor(), b.maxPositionEmbeddings());
        ModelSummary summary = summarize(c, w, layers);
        return new DecoderModel(spec, embed, layers, finalNorm, lmHead, new Compute(kernels, pool, options.execution()), weights, summary,
                List.copyOf(w.matrices()));
    }

    private ModelSummary summarize(C c, WeightLoader w, DecoderModel.Layer[] layers) {
        BaseConfig b = c.base();
        // parameters: matrices by their logical shape (an NVFP4 or MXFP4 checkpoint stores codes and scales, none of
        // which is a parameter count), plus the vectors (norms, biases, sinks)
        Set<String> counted = new HashSet<>();
        long total = 0;
        for (WeightMatrix m : w.matrices()) {
            if (counted.add(m.name())) {
                total += (long) m.rows() * m.cols();
            }
        }
        if (!counted.contains("model.embed_tokens.weight")) {
            total += (long) b.vocabSize() * b.hiddenSize(); // the embedding table (a lookup; a matmul too when tied)
        }
        total += w.vectorElements();
        // The usual MoE convention: everything except the experts a token is not routed to.
        long inactive = 0;
        for (DecoderModel.Layer l : layers) {
            if (l.ffn() instanceof SparseMoeBlock moe) {
                inactive += (long) (moe.nExperts() - moe.topK()) * moe.parametersPerExpert();
            }
        }
        return new ModelSummary(modelType(), architecture(), c.asMap(), total, total - inactive, w.used(), w.unused(),
                w.matrices().stream().map(ModelSummary.MatrixInfo::of).toList(), w.quantizeNanos(), w.cacheReport());
    }
}
