package dev.lockstep.moe.block;

import dev.lockstep.kernels.WeightMatrix;

/** A dense SwiGLU MLP: {@code down(silu(gate(x)) * up(x))} (HF {@code Qwen3MoeMLP}, used by {@code mlp_only_layers}). */
public final class DenseMlpBlock implements FeedForward {
    private final WeightMatrix gate; // [inter, hidden]
    private final WeightMatrix up;   // [inter, hidden]
    private final WeightMatrix down; // [hidden, inter]

    /** Weight bytes one token's forward streams through this block. */
    @Override
    public long weightBytesPerToken() {
        return gate.byteSize() + up.byteSize() + down.byteSize();
    }

    public DenseMlpBlock(WeightMatrix gate, WeightMatrix up, WeightMatrix down) {
        this.gate = gate;
        this.up = up;
        this.down = down;
    }

    public static final class Scratch {
        float[] g = new float[0], u = new float[0];

        void ensure(int n, int inter) {
            if (g.length < n * inter) {
                g = new float[n * inter + Compute.OUTPUT_PAD];
                u = new float[n * inter + Compute.OUTPUT_PAD];
            }
        }
    }

    public void forward(Compute c, float[] x, int n, Scratch s, float[] out) {
        int inter = gate.rows();
        s.ensure(n, inter);
        c.matmul2(x, n, gate, s.g, up, s.u);
        c.kernels().siluMul(s.g, 0, s.u, 0, s.g, 0, n * inter);
        c.matmul(down, s.g, n, out);
    }
}
