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
 * some malformed inputs abort the JVM inside it. Encoding adds no special tokens (Qwen3 adds no BOS); no
 * truncation, no padding.
 *
 * <p>Thread-safe: encode and decode may run from many threads at once; {@link #close()} waits for them and
 * later calls fail with {@link IllegalStateException} (a closed native handle is never touched).
 */
public final class Tokenizer implements AutoCloseable {
    private static final Map<String, String> OPTIONS = Map.of(
            "addSpecialTokens", "false", "truncation", "false", "padding", "false");

    private final HuggingFaceTokenizer hf;
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private boolean closed; // guarded by lock

    private Tokenizer(HuggingFaceTokenizer hf) {
        this.hf = hf;
    }

    /** Loads {@code modelDir/tokenizer.json} for a model with {@code vocabSize} token ids. */
    public static Tokenizer load(Path modelDir, int vocabSize) {
        Path file = modelDir.resolve("tokenizer.json");
        String json = TokenizerSpec.canonicalJson(file, vocabSize);
        try {
            return new Tokenizer(HuggingFaceTokenizer.newInstance(
                    new ByteArrayInputStream(json.getBytes(StandardCharsets.UTF_8)), OPTIONS));
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

    public int[] encode(String text) {
        enter();
        try {
            Encoding enc = hf.encode(text, false, false);
            long[] ids = enc.getIds();
            int[] out = new int[ids.length];
            for (int i = 0; i < ids.length; i++) {
                out[i] = Math.toIntExact(ids[i]);
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
