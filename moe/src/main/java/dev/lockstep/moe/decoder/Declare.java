package dev.lockstep.moe.decoder;

import dev.lockstep.kernels.Rope;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.TierPlacement.Role;
import dev.lockstep.moe.WeightLoader;
import dev.lockstep.moe.block.AttentionBlock;
import dev.lockstep.moe.block.DenseMlpBlock;

/**
 * Declarations the families share, in HF's tensor names: the attention projections (with the optional biases,
 * q/k norms and sinks a family has), per-expert 2-D expert matrices, and a SwiGLU MLP. Each checks names and
 * shapes through the {@link WeightLoader}, so a missing or mis-shaped tensor is a load error naming it.
 */
public final class Declare {
    private Declare() {
    }

    /** Which optional attention tensors a family has. */
    public record AttentionTensors(boolean qkvBias, boolean oBias, AttentionBlock.QkNorm qkNorm, boolean sinks) {
        public static final AttentionTensors PLAIN = new AttentionTensors(false, false, AttentionBlock.QkNorm.NONE, false);
    }

    /**
     * {@code <p>self_attn.{q,k,v,o}_proj.weight} (and {@code .bias}, {@code q_norm}/{@code k_norm}, {@code sinks} when
     * the family has them) as one {@link AttentionBlock} with {@code scale} and sliding {@code window} (0 = full).
     */
    public static AttentionBlock attention(WeightLoader w, String p, BaseConfig b, AttentionTensors t, float scale, int window, Rope rope) {
        int h = b.hiddenSize(), q = b.qDim(), kv = b.kvDim();
        String a = p + "self_attn.";
        WeightMatrix wq = w.matrix(a + "q_proj.weight", Role.ATTENTION, q, h);
        WeightMatrix wk = w.matrix(a + "k_proj.weight", Role.ATTENTION, kv, h);
        WeightMatrix wv = w.matrix(a + "v_proj.weight", Role.ATTENTION, kv, h);
        WeightMatrix wo = w.matrix(a + "o_proj.weight", Role.ATTENTION, h, q);
        float[] qb = t.qkvBias() ? w.vector(a + "q_proj.bias", q) : null;
        float[] kb = t.qkvBias() ? w.vector(a + "k_proj.bias", kv) : null;
        float[] vb = t.qkvBias() ? w.vector(a + "v_proj.bias", kv) : null;
        float[] ob = t.oBias() ? w.vector(a + "o_proj.bias", h) : null;
        float[] qn = null, kn = null;
        switch (t.qkNorm()) {
            case PER_HEAD -> {
                qn = w.vector(a + "q_norm.weight", b.headDim());
                kn = w.vector(a + "k_norm.weight", b.headDim());
            }
            case WHOLE -> {
                qn = w.vector(a + "q_norm.weight", q);
                kn = w.vector(a + "k_norm.weight", kv);
            }
            case NONE -> {
            }
        }
        float[] sinks = t.sinks() ? w.vector(a + "sinks", b.nHeads()) : null;
        return new AttentionBlock(new AttentionBlock.Weights(wq, wk, wv, wo, qb, kb, vb, ob, qn, kn, sinks),
                new AttentionBlock.Spec(b.nHeads(), b.nKvHeads(), b.headDim(), scale, t.qkNorm(), b.rmsNormEps(), window), rope);
    }

    /** Gate, up and down of {@code experts} experts stored one 2-D tensor each: {@code <prefix>X.<gate>.weight} and so on. */
    public static WeightMatrix[][] experts(WeightLoader w, String prefix, int experts, int inter, int hidden, String gate, String up, String down) {
        WeightMatrix[][] m = new WeightMatrix[3][experts];
        for (int x = 0; x < experts; x++) {
            String ep = prefix + x + ".";
            m[0][x] = w.matrix(ep + gate + ".weight", Role.EXPERT, inter, hidden);   // [inter, hidden]
            m[1][x] = w.matrix(ep + up + ".weight", Role.EXPERT, inter, hidden);     // [inter, hidden]
            m[2][x] = w.matrix(ep + down + ".weight", Role.EXPERT, hidden, inter);   // [hidden, inter]
        }
        return m;
    }

    /** A SwiGLU MLP {@code <p>{gate,up,down}_proj.weight}, read by every token (dense layers, shared experts). */
    public static DenseMlpBlock mlp(WeightLoader w, String p, int inter, int hidden, Role role) {
        return new DenseMlpBlock(w.matrix(p + "gate_proj.weight", role, inter, hidden), w.matrix(p + "up_proj.weight", role, inter, hidden),
                w.matrix(p + "down_proj.weight", role, hidden, inter));
    }
}
