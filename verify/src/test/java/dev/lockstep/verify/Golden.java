package dev.lockstep.verify;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lockstep.memory.DType;
import dev.lockstep.memory.SafetensorsFile;
import dev.lockstep.memory.TensorView;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.ValueLayout;
import java.net.URISyntaxException;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

/** Golden outputs of HF transformers (copied from ../shared/models/kjv-qwen3moe into test resources). */
final class Golden {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private Golden() {
    }

    /** The bundled model directory: {@code models/kjv-qwen3moe} at the repository root. */
    static Path bundledModel() {
        Path dir = Path.of("").toAbsolutePath();
        while (dir != null) {
            Path candidate = dir.resolve("models/kjv-qwen3moe");
            if (Files.isDirectory(candidate)) {
                return candidate;
            }
            dir = dir.getParent();
        }
        throw new IllegalStateException("models/kjv-qwen3moe not found above " + Path.of("").toAbsolutePath());
    }

    static Path resource(String name) {
        try {
            var url = Golden.class.getResource("/golden/kjv-qwen3moe/" + name);
            if (url == null) {
                throw new IllegalStateException("missing test resource golden/kjv-qwen3moe/" + name);
            }
            return Path.of(url.toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static JsonNode json(String name) {
        try {
            return new ObjectMapper().readTree(Files.readString(resource(name)));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static float[] floats(SafetensorsFile f, String name) {
        TensorView v = f.view(name);
        if (v.dtype() != DType.F32) {
            throw new IllegalStateException(name + " is " + v.dtype());
        }
        float[] out = new float[(int) v.info().elementCount()];
        for (int i = 0; i < out.length; i++) {
            out[i] = v.data().get(F32, 4L * i);
        }
        return out;
    }

    static int[] ints(SafetensorsFile f, String name) {
        TensorView v = f.view(name);
        if (v.dtype() != DType.I32) {
            throw new IllegalStateException(name + " is " + v.dtype());
        }
        int[] out = new int[(int) v.info().elementCount()];
        for (int i = 0; i < out.length; i++) {
            out[i] = v.data().get(I32, 4L * i);
        }
        return out;
    }

    static int[] intArray(JsonNode node) {
        int[] out = new int[node.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = node.get(i).asInt();
        }
        return out;
    }

    /** ||a - b||_2 / ||b||_2 over {@code b[off .. off+n)} vs {@code a[aOff ..]}, in double. */
    static double relL2(float[] a, int aOff, float[] b, int bOff, int n) {
        double num = 0, den = 0;
        for (int i = 0; i < n; i++) {
            double d = (double) a[aOff + i] - b[bOff + i];
            num += d * d;
            den += (double) b[bOff + i] * b[bOff + i];
        }
        return Math.sqrt(num / den);
    }

    static int argmax(float[] x, int off, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) {
            if (x[off + i] > x[off + best]) {
                best = i;
            }
        }
        return best;
    }

    /**
     * Greedy decode with the KV cache, as HF's goldens were made: prefill {@code prompt}, then {@code n} steps each
     * taking the argmax and feeding it back. Returns the generated ids.
     */
    static int[] greedy(dev.lockstep.moe.CausalLm model, int[] prompt, int n) {
        int vocab = model.vocabSize();
        float[] logits = new float[vocab];
        int[] generated = new int[n];
        try (dev.lockstep.moe.kv.KvCache cache = model.newKvCache(prompt.length + n)) {
            dev.lockstep.moe.ForwardState state = model.newState(prompt.length);
            model.forward(prompt, 0, prompt.length, cache, state, logits, dev.lockstep.moe.LogitsMode.LAST, dev.lockstep.moe.ForwardObserver.NONE);
            for (int i = 0; i < n; i++) {
                generated[i] = argmax(logits, 0, vocab);
                model.forward(generated, i, 1, cache, state, logits, dev.lockstep.moe.LogitsMode.LAST, dev.lockstep.moe.ForwardObserver.NONE);
            }
        }
        return generated;
    }

    /** {@code n} token ids in {@code [0, vocab)} from a seeded generator. */
    static int[] randomTokens(long seed, int n, int vocab) {
        java.util.SplittableRandom r = new java.util.SplittableRandom(seed);
        int[] t = new int[n];
        for (int i = 0; i < n; i++) {
            t[i] = r.nextInt(vocab);
        }
        return t;
    }
}
