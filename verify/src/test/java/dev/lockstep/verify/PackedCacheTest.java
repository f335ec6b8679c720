package dev.lockstep.verify;

import dev.lockstep.kernels.KernelProvider;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.LoadOptions;
import dev.lockstep.moe.ModelFamilies;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The packed-weights cache: the first load writes it, the next maps it (no repacking) and gives bit-identical
 * logits; other options or kernels key another file; a corrupt file is refused by its checksums, deleted, and
 * rebuilt by the next load.
 */
class PackedCacheTest {
    @TempDir
    Path cache;

    static final int[] PROMPT = {1146, 259, 2084, 387, 3363};

    static CausalLm load(WorkerPool pool, LoadOptions options) {
        return ModelFamilies.load(ModelFamilies.readConfig(Golden.bundledModel()), KernelProvider.get(), pool, options);
    }

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void theSecondLoadMapsTheCacheAndGivesTheSameBits(boolean nvfp4) throws IOException {
        LoadOptions options = new LoadOptions(nvfp4, false, List.of()).withCache(cache);
        try (WorkerPool pool = new WorkerPool(2)) {
            float[] fresh;
            try (CausalLm first = load(pool, options)) {
                assertTrue(first.summary().packedCache().startsWith("wrote "), first.summary().packedCache());
                fresh = Nvfp4ModelTest.logits(first, PROMPT);
            }
            try (CausalLm second = load(pool, options)) {
                assertTrue(second.summary().packedCache().startsWith("mapped "), second.summary().packedCache());
                assertEquals(0, second.summary().quantizeNanos(), "nothing quantized again");
                assertArrayEquals(fresh, Nvfp4ModelTest.logits(second, PROMPT));
            }
            try (CausalLm uncached = load(pool, new LoadOptions(nvfp4, false, List.of()))) {
                assertArrayEquals(fresh, Nvfp4ModelTest.logits(uncached, PROMPT), "cache or not, the same bits");
            }
        }
    }

    @Test
    void otherOptionsUseAnotherCacheFile() throws IOException {
        try (WorkerPool pool = new WorkerPool(1)) {
            load(pool, new LoadOptions(false, false, List.of()).withCache(cache)).close();
            load(pool, new LoadOptions(true, false, List.of()).withCache(cache)).close();
            try (var files = Files.list(cache)) {
                assertEquals(2, files.filter(f -> f.toString().endsWith(".packed")).count());
            }
        }
    }

    @Test
    void aCorruptCacheIsRefusedDeletedAndRebuilt() throws IOException {
        LoadOptions options = new LoadOptions(false, false, List.of()).withCache(cache);
        try (WorkerPool pool = new WorkerPool(2)) {
            load(pool, options).close();
            Path file;
            try (var files = Files.list(cache)) {
                file = files.filter(f -> f.toString().endsWith(".packed")).findFirst().orElseThrow();
            }
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
                ch.write(java.nio.ByteBuffer.wrap(new byte[]{0x55}), ch.size() - 1000); // one byte inside the last entry
            }
            LockstepException e = assertThrows(LockstepException.class, () -> load(pool, options).close());
            assertTrue(e.getMessage().contains("fails its checksum") && e.getMessage().contains(file.getFileName().toString()), e.getMessage());
            assertFalse(Files.exists(file), "the corrupt cache is deleted");
            try (CausalLm rebuilt = load(pool, options)) {
                assertTrue(rebuilt.summary().packedCache().startsWith("wrote "), rebuilt.summary().packedCache());
            }
        }
    }
}
