package dev.lockstep.engine;

import com.fasterxml.jackson.databind.JsonNode;
import dev.lockstep.kernels.KernelProvider;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ModelConfigJson;
import dev.lockstep.moe.ModelFamilies;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalInt;

/**
 * A loaded model with its tokenizer and compute threads: the entry point for applications.
 *
 * <pre>{@code
 * try (Engine engine = Engine.load(Path.of("models/kjv-qwen3moe"), EngineOptions.defaults());
 *      Session session = engine.newSession(256)) {
 *     session.generate(engine.tokenizer().encode("In the beginning"), 32, SamplingParams.GREEDY,
 *             (id, text) -> System.out.print(text));
 * }
 * }</pre>
 *
 * Sessions of one engine share its worker pool: run them from one thread at a time.
 */
public final class Engine implements AutoCloseable {
    private final Path modelDir;
    private final WorkerPool pool;
    private final CausalLm model;
    private final Tokenizer tokenizer;
    private final OptionalInt eosTokenId;

    private Engine(Path modelDir, WorkerPool pool, CausalLm model, Tokenizer tokenizer, OptionalInt eosTokenId) {
        this.modelDir = modelDir;
        this.pool = pool;
        this.model = model;
        this.tokenizer = tokenizer;
        this.eosTokenId = eosTokenId;
    }

    public static Engine load(Path modelDir, EngineOptions options) {
        if (!Files.isDirectory(modelDir)) {
            throw new LockstepException(modelDir + ": model directory does not exist");
        }
        WorkerPool pool = new WorkerPool(options.threads());
        CausalLm model = null;
        try {
            model = ModelFamilies.load(modelDir, KernelProvider.get(), pool);
            Tokenizer tokenizer = Tokenizer.load(modelDir);
            return new Engine(modelDir, pool, model, tokenizer, eosTokenId(modelDir));
        } catch (RuntimeException e) {
            if (model != null) {
                model.close();
            }
            pool.close();
            throw e;
        }
    }

    /** {@code eos_token_id} from generation_config.json, else config.json (the first, if a list). */
    private static OptionalInt eosTokenId(Path modelDir) {
        for (String name : new String[]{"generation_config.json", "config.json"}) {
            Path file = modelDir.resolve(name);
            if (!Files.isRegularFile(file)) {
                continue;
            }
            JsonNode eos = ModelConfigJson.read(file).raw("eos_token_id");
            if (eos != null && eos.isArray() && !eos.isEmpty()) {
                eos = eos.get(0);
            }
            if (eos != null && eos.isIntegralNumber()) {
                return OptionalInt.of(eos.asInt());
            }
        }
        return OptionalInt.empty();
    }

    /** A session with room for {@code contextTokens} positions. */
    public Session newSession(int contextTokens) {
        if (contextTokens < 1) {
            throw new IllegalArgumentException("context must be at least 1 token, got " + contextTokens);
        }
        return new Session(this, model.newKvCache(contextTokens));
    }

    public CausalLm model() {
        return model;
    }

    public Tokenizer tokenizer() {
        return tokenizer;
    }

    public OptionalInt eosTokenId() {
        return eosTokenId;
    }

    public Path modelDir() {
        return modelDir;
    }

    public int threads() {
        return pool.threads();
    }

    public String kernelsName() {
        return KernelProvider.get().name();
    }

    @Override
    public void close() {
        tokenizer.close();
        model.close();
        pool.close();
    }
}
