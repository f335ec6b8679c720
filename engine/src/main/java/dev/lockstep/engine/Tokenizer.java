package dev.lockstep.engine;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import dev.lockstep.memory.LockstepException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The model's {@code tokenizer.json}, run by Hugging Face's tokenizers library through DJL (its native
 * library ships inside the DJL jar, so this works offline). Encoding adds no special tokens (Qwen3 adds no
 * BOS); no truncation, no padding.
 */
public final class Tokenizer implements AutoCloseable {
    private final HuggingFaceTokenizer hf;

    private Tokenizer(HuggingFaceTokenizer hf) {
        this.hf = hf;
    }

    public static Tokenizer load(Path modelDir) {
        Path file = modelDir.resolve("tokenizer.json");
        if (!Files.isRegularFile(file)) {
            throw new LockstepException(file + ": no such file (the model directory needs a tokenizer.json)");
        }
        try {
            return new Tokenizer(HuggingFaceTokenizer.builder()
                    .optTokenizerPath(file)
                    .optAddSpecialTokens(false)
                    .optTruncation(false)
                    .optPadding(false)
                    .build());
        } catch (IOException | RuntimeException e) {
            throw new LockstepException(file + ": cannot load tokenizer (" + e.getMessage() + ")", e);
        }
    }

    public int[] encode(String text) {
        Encoding enc = hf.encode(text, false, false);
        long[] ids = enc.getIds();
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            out[i] = Math.toIntExact(ids[i]);
        }
        return out;
    }

    public String decode(int[] ids, int from, int to) {
        long[] l = new long[to - from];
        for (int i = from; i < to; i++) {
            l[i - from] = ids[i];
        }
        return hf.decode(l, false);
    }

    public String decode(int[] ids) {
        return decode(ids, 0, ids.length);
    }

    /** A streaming decoder over this tokenizer; see {@link StreamingDecoder}. */
    public StreamingDecoder streamingDecoder() {
        return new StreamingDecoder(this);
    }

    @Override
    public void close() {
        hf.close();
    }
}
