package dev.lockstep.moe;

/**
 * Taps into a forward pass, for golden tests and debugging. Arrays are the forward's own scratch: copy what
 * you keep. Default methods do nothing, so observers implement only what they need.
 */
public interface ForwardObserver {
    ForwardObserver NONE = new ForwardObserver() {
    };

    /**
     * Hidden states after stage {@code index}, HF {@code output_hidden_states} numbering: 0 is the embedding
     * output, {@code i} in 1..L-1 the output of layer {@code i-1}, L the final norm's output.
     * {@code h} holds {@code nTokens} rows of {@code hiddenSize}.
     */
    default void onHidden(int index, float[] h, int nTokens, int hiddenSize) {
    }

    /**
     * Router of MoE layer {@code layer}: {@code logits} holds {@code nTokens} rows of {@code nExperts};
     * {@code topK} holds {@code nTokens} rows of {@code k} selected expert ids, highest weight first.
     */
    default void onRouter(int layer, float[] logits, int[] topK, int nTokens, int nExperts, int k) {
    }
}
