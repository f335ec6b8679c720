package dev.lockstep.engine;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import dev.lockstep.memory.LockstepException;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The model's {@code tokenizer.json}, run by Hugging Face's tokenizers library through DJL (its native
 * library ships inside the DJL jar, so this works offline). The file is validated and canonicalized by
 * {@link TokenizerSpec} first: the native library only ever sees JSON that Lockstep has checked, because
 * some malformed inputs abort the JVM inside it. Encoding adds BOS when the model's tokenizer_config.json says
 * {@code add_bos_token} (Qwen3 and gpt-oss do not; Mixtral, OLMoE, DeepSeek do), nothing else; no truncation, no
 * padding.
 *
 * <p>Thread-safe: encode and decode may run from many threads at once; {@link #close()} waits for them and
 * later calls fail with {@link IllegalStateException} (a closed native handle is never touched).
 */
public final class Tokenizer implements AutoCloseable {
    private static final Map<String, String> OPTIONS = Map.of(
            "addSpecialTokens", "false", "truncation", "false", "padding", "false");

    private final HuggingFaceTokenizer hf;
    private final SpecialTokens special;
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private boolean closed; // guarded by lock

    private Tokenizer(HuggingFaceTokenizer hf, SpecialTokens special) {
        this.hf = hf;
        this.special = special;
    }

    /** BOS (and whether {@link #encode} adds it), the end-of-sequence set, the special tokens by name. */
    public SpecialTokens specialTokens() {
        return special;
    }

    /**
     * Loads {@code modelDir/tokenizer.json} for a model with {@code vocabSize} token ids, with the special tokens its
     * tokenizer_config.json, generation_config.json and config.json declare ({@link SpecialTokens}).
     */
    public static Tokenizer load(Path modelDir, int vocabSize) {
        Path file = modelDir.resolve("tokenizer.json");
        String json = TokenizerSpec.canonicalJson(file, vocabSize);
        SpecialTokens special = SpecialTokens.read(modelDir, vocabSize);
        try {
            return new Tokenizer(HuggingFaceTokenizer.newInstance(
                    new ByteArrayInputStream(json.getBytes(StandardCharsets.UTF_8)), OPTIONS), special);
        } catch (IOException | RuntimeException e) {
            throw new LockstepException(file + ": cannot load tokenizer (" + e.getMessage() + ")", e);
        }
    }

    private void enter() {
        lock.readLock().lock();
        if (closed) {
            lock.readLock().unlock();
            throw new IllegalStateException("tokenizer is closed");
        }
    }

    /** The ids of {@code text}, after BOS when tokenizer_config.json says {@code add_bos_token} (as HF encodes it). */
    public int[] encode(String text) {
        enter();
        try {
            Encoding enc = hf.encode(text, false, false);
            long[] ids = enc.getIds();
            int bos = special.addBos() ? 1 : 0;
            int[] out = new int[bos + ids.length];
            if (bos == 1) {
                out[0] = special.bos().getAsInt();
            }
            for (int i = 0; i < ids.length; i++) {
                out[bos + i] = Math.toIntExact(ids[i]);
            }
            return out;
        } finally {
            lock.readLock().unlock();
        }
    }

    public String decode(int[] ids, int from, int to) {
        long[] l = new long[to - from];
        for (int i = from; i < to; i++) {
            if (ids[i] < 0) {
                throw new IllegalArgumentException("token id " + ids[i] + " at index " + i + " is negative");
            }
            l[i - from] = ids[i];
        }
        enter();
        try {
            return hf.decode(l, false);
        } finally {
            lock.readLock().unlock();
        }
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
        lock.writeLock().lock();
        try {
            if (!closed) {
                closed = true;
                hf.close();
            }
        } finally {
            lock.writeLock().unlock();
        }
    }
}
