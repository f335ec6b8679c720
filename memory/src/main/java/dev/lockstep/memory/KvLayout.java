package dev.lockstep.memory;

import java.util.List;

/**
 * What one KV page holds, layer by layer: each layer's key block ({@code keyHeads x keyDim}, transposed per
 * {@link KvBlockDescriptor}) and value block ({@code valueHeads x valueDim}, by position), float32, for
 * {@link KvBlockDescriptor#BLOCK_TOKENS} positions. Grouped-query attention has equal key and value shapes; an MLA
 * layer keeps one key head of the compressed latent and the decoupled RoPE key ({@code kv_lora_rank +
 * qk_rope_head_dim}) and one value head of the latent ({@link Layer#latent}); a sliding-window layer has the shape of a full one (its window is
 * the attention's: pages older than the window are simply not read). The element type is float32 today; a layout
 * is where bf16, E4M3 or NVFP4 pages would be declared, without the families changing.
 */
public record KvLayout(List<Layer> layers) {
    /** One layer's key and value shapes (a zero head count means no such block). */
    public record Layer(int keyHeads, int keyDim, int valueHeads, int valueDim) {
        public Layer {
            if (keyHeads < 0 || keyDim < 0 || valueHeads <= 0 || valueDim <= 0 || (keyHeads == 0) != (keyDim == 0)) {
                throw new IllegalArgumentException("bad KV layer shape: keys " + keyHeads + " x " + keyDim + ", values " + valueHeads + " x " + valueDim);
            }
        }

        /** Grouped-query attention: {@code kvHeads x headDim} keys and values. */
        public static Layer gqa(int kvHeads, int headDim) {
            return new Layer(kvHeads, headDim, kvHeads, headDim);
        }

        /**
         * MLA: one key head of {@code rank + ropeDim} (the latent and the roped decoupled key, transposed for the scores
         * kernel) and one value head of {@code rank} (the latent again, by position, for the values kernel).
         */
        public static Layer latent(int rank, int ropeDim) {
            return new Layer(1, rank + ropeDim, 1, rank);
        }

        /** Whether this is an MLA layer's latent layout (one key head wider than its one value head). */
        public boolean isLatent() {
            return keyHeads == 1 && valueHeads == 1 && keyDim > valueDim;
        }

        public long keyBlockBytes() {
            return KvBlockDescriptor.blockBytes(keyHeads, keyDim);
        }

        public long valueBlockBytes() {
            return KvBlockDescriptor.blockBytes(valueHeads, valueDim);
        }

        /** Bytes one position takes in this layer. */
        public long bytesPerPosition() {
            return (keyBlockBytes() + valueBlockBytes()) / KvBlockDescriptor.BLOCK_TOKENS;
        }

        @Override
        public String toString() {
            return isLatent() ? "latent " + valueDim + " + rope " + (keyDim - valueDim) + " as 1 x " + keyDim + " K, 1 x " + valueDim + " V"
                    : keyHeads + " x " + keyDim + " K, " + valueHeads + " x " + valueDim + " V";
        }
    }

    public KvLayout {
        if (layers.isEmpty()) {
            throw new IllegalArgumentException("a KV layout needs at least one layer");
        }
        layers = List.copyOf(layers);
    }

    /** Every one of {@code n} layers grouped-query with {@code kvHeads x headDim}. */
    public static KvLayout uniform(int n, int kvHeads, int headDim) {
        return new KvLayout(java.util.Collections.nCopies(n, Layer.gqa(kvHeads, headDim)));
    }

    public int size() {
        return layers.size();
    }

    public Layer layer(int l) {
        return layers.get(l);
    }

    /** Bytes of one page: every layer's key and value blocks. */
    public long pageBytes() {
        long b = 0;
        for (Layer l : layers) {
            b += l.keyBlockBytes() + l.valueBlockBytes();
        }
        return b;
    }

    /** Bytes one position takes over all layers. */
    public long bytesPerPosition() {
        return pageBytes() / KvBlockDescriptor.BLOCK_TOKENS;
    }
}
