package dev.lockstep.moe;

import dev.lockstep.kernels.DenseFormat;
import dev.lockstep.kernels.Nvfp4Format;
import dev.lockstep.kernels.Nvfp4Quantizer;
import dev.lockstep.kernels.WeightFormat;
import dev.lockstep.kernels.WeightLayout;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.Checkpoint;
import dev.lockstep.memory.CheckpointException;
import dev.lockstep.memory.DType;
import dev.lockstep.memory.TensorInfo;
import dev.lockstep.memory.TensorView;
import dev.lockstep.memory.TierPlacement;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Fetches tensors a family declares, checking presence, dtype and shape, and records them so the family's
 * summary lists exactly what it uses. Errors name the family, the tensor, and the expected vs found value.
 * Matrices the kernels multiply are repacked into the kernels' {@link WeightLayout#TILED} layout in the tier
 * the {@link TierPlacement} plan gives them; lookup tables (embeddings) are copied row-major likewise. A loaded model
 * touches no checkpoint page, so the checkpoint is closed once loading ends.
 *
 * <p>Loading runs in two phases. Declaring a matrix ({@link #matrix}, {@link #copied}, {@link #packed}) checks
 * names, shapes and dtypes and allocates the packed copy at once, so every declaration error surfaces in the
 * family's code; the bytes are moved by {@link #finish()}, which runs all the copies on every core, checks the
 * values (non-finite weights, bad NVFP4 scales) and releases each checkpoint range from memory once it has
 * been copied ({@link MemorySegment#unload()}), so peak memory stays near the size of the packed model rather
 * than twice it. A family must call {@link #finish()} before it uses any matrix.
 */
public final class WeightLoader implements AutoCloseable {
    private static final long ALIGNMENT_BYTES = 64;
    private static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final String family;
    private final Checkpoint checkpoint;
    private final int tileRows;
    private final TierPlacement placement;
    private final List<TensorInfo> used = new ArrayList<>();
    private final LoadOptions options;
    private final Nvfp4Recipe recipe;
    private final Map<String, Float> groupScale2 = new ConcurrentHashMap<>();
    private final List<Work> work = new ArrayList<>();
    private final Map<WeightMatrix, TensorView> unchecked = new java.util.IdentityHashMap<>();
    private final List<WeightMatrix> matrices = new ArrayList<>();
    private final AtomicLong quantizeNanos = new AtomicLong();
    /** The role each declared matrix has in the tier plan, as its family declared it. */
    private final Map<String, TierPlacement.Role> roles = new java.util.HashMap<>();
    private final Set<String> fetched = new HashSet<>();
    private long vectorElements;
    /** Row-major copies of expert matrices a 3-D tensor holds strided or transposed; freed after {@link #finish()}. */
    private final java.lang.foreign.Arena staging = java.lang.foreign.Arena.ofShared();

    /** Packed-weights cache: bumped whenever a packed layout changes, so old cache files stop matching. */
    static final int CACHE_LAYOUT_VERSION = 2;
    private final String cacheKey;
    private final java.nio.file.Path cacheFile;
    private final MemorySegment cacheMapping;
    private final Map<String, dev.lockstep.memory.PackedCacheDescriptor.Entry> cacheEntries;
    private final Map<String, MemorySegment> allocations = new java.util.LinkedHashMap<>();
    private final Map<String, Float> allocationScales = new java.util.HashMap<>();
    private final Map<String, dev.lockstep.memory.PackedCacheDescriptor.Entry> hits = new java.util.LinkedHashMap<>();
    private String cacheReport = "off";

    /** One deferred copy: {@code bytes} of checkpoint data read by {@code body}, released after. */
    private record Work(String tensor, long bytes, List<MemorySegment> sources, Runnable body) {
    }

    /** {@code arena} receives the packed copies and must outlive the model. */
    public WeightLoader(String family, Checkpoint checkpoint, int tileRows, TierPlacement placement) {
        this(family, checkpoint, tileRows, placement, LoadOptions.DEFAULT);
    }

    public WeightLoader(String family, Checkpoint checkpoint, int tileRows, TierPlacement placement, LoadOptions options) {
        this(family, checkpoint, tileRows, placement, options, "tiles " + tileRows);
    }

    /**
     * {@code kernelsId} names the kernels the packed layout is for (their name and tile height): part of the
     * packed-weights cache key, so a cache made for other kernels (another vector width) is never mapped.
     */
    public WeightLoader(String family, Checkpoint checkpoint, int tileRows, TierPlacement placement, LoadOptions options, String kernelsId) {
        this.options = options;
        this.recipe = options.recipe();
        this.family = family;
        this.checkpoint = checkpoint;
        this.tileRows = tileRows;
        this.placement = placement;
        if (options.cacheDir() != null) {
            this.cacheKey = cacheKey(family, checkpoint, kernelsId + " x" + tileRows, options);
            this.cacheFile = options.cacheDir().resolve(checkpoint.directory().toAbsolutePath().normalize().getFileName() + "-"
                    + cacheKey.substring(0, 16) + ".packed");
            MemorySegment mapping = java.nio.file.Files.isRegularFile(cacheFile) ? placement.mapReadOnly(cacheFile) : null;
            this.cacheEntries = mapping == null ? null : dev.lockstep.memory.PackedCacheDescriptor.read(mapping, cacheKey);
            this.cacheMapping = cacheEntries == null ? null : mapping;
        } else {
            this.cacheKey = null;
            this.cacheFile = null;
            this.cacheMapping = null;
            this.cacheEntries = null;
        }
    }

    /** Everything the packed bytes depend on: layout version, family, kernels and tiles, options, config, checkpoint files. */
    private static String cacheKey(String family, Checkpoint checkpoint, String kernels, LoadOptions options) {
        StringBuilder k = new StringBuilder();
        k.append("layout ").append(CACHE_LAYOUT_VERSION).append("\nfamily ").append(family).append("\nkernels ").append(kernels);
        k.append("\noptions ").append(options.quantizeNvfp4()).append(' ').append(options.quantizeLmHead()).append(' ').append(options.exclude()).append('\n');
        try {
            java.nio.file.Path config = checkpoint.directory().resolve("config.json");
            k.append("config ").append(java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256")
                    .digest(java.nio.file.Files.readAllBytes(config)))).append('\n');
            for (java.nio.file.Path f : checkpoint.tensors().stream().map(TensorInfo::file).distinct().sorted().toList()) {
                var attrs = java.nio.file.Files.readAttributes(f, java.nio.file.attribute.BasicFileAttributes.class);
                k.append("file ").append(f.toAbsolutePath().normalize()).append(' ').append(attrs.size()).append(' ')
                        .append(attrs.lastModifiedTime().toMillis()).append('\n');
            }
            return java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256")
                    .digest(k.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8)));
        } catch (java.io.IOException | java.security.NoSuchAlgorithmException e) {
            throw new dev.lockstep.memory.LockstepException(checkpoint.directory() + ": cannot key the packed-weights cache (" + e.getMessage() + ")", e);
        }
    }

    /**
     * Memory for one packed allocation: a slice of the mapped cache when it holds {@code purpose} with this size
     * (then there is nothing to copy: returns the slice and records the hit), else fresh arena memory.
     */
    private MemorySegment allocate(String purpose, long bytes) {
        return allocate(purpose, roles.getOrDefault(purpose.substring(0, Math.max(0, purpose.indexOf(' '))), null), bytes);
    }

    private MemorySegment allocate(String purpose, TierPlacement.Role declared, long bytes) {
        TierPlacement.Role role = declared != null ? declared : TierPlacement.Role.of(purpose);
        if (allocations.containsKey(purpose)) {
            throw new IllegalStateException("two packed allocations named " + purpose);
        }
        dev.lockstep.memory.PackedCacheDescriptor.Entry e = cacheEntries == null ? null : cacheEntries.get(purpose);
        MemorySegment seg;
        if (e != null && e.bytes() == bytes) {
            // Every tensor stays in the mapping, hot ones too: weights of one segment kind keep the kernels' call
            // sites monomorphic (mapped and arena segments mixed cost synth decode a third: BENCHMARKS.md).
            placement.recordMapped(purpose, role, bytes);
            seg = cacheMapping.asSlice(e.offset(), bytes);
            hits.put(purpose, e);
        } else {
            seg = placement.allocate(purpose, role, bytes, ALIGNMENT_BYTES);
        }
        allocations.put(purpose, seg);
        return seg;
    }

    private boolean cached(String purpose) {
        return hits.containsKey(purpose);
    }

    /** What the packed-weights cache did: "off", "mapped PATH", "wrote PATH (N MB)", or why it was not written. */
    public String cacheReport() {
        return cacheReport;
    }

    public boolean has(String name) {
        return checkpoint.contains(name);
    }

    private TensorView fetch(String name, long... shape) {
        if (!checkpoint.contains(name)) {
            throw new CheckpointException(CheckpointException.Problem.MISSING_TENSOR,
                    checkpoint.directory() + ": " + family + " needs tensor '" + name + "' with shape " + Arrays.toString(shape)
                            + ", which the checkpoint does not have");
        }
        TensorView v = checkpoint.tensor(name);
        if (!Arrays.equals(v.info().shape(), shape)) {
            throw new CheckpointException(CheckpointException.Problem.SHAPE_MISMATCH,
                    v.info().file() + ": tensor '" + name + "' has shape " + v.info().shapeString() + ", but " + family
                            + " with this config.json expects " + Arrays.toString(shape));
        }
        if (fetched.add(name)) {
            used.add(v.info());
        }
        return v;
    }

    /**
     * A {@code [rows, cols]} weight matrix for matmul, packed for the kernels: an NVFP4 module (ModelOpt's
     * {@code weight}/{@code weight_scale}/{@code weight_scale_2} or compressed-tensors' {@code weight_packed}/
     * {@code weight_scale}/{@code weight_global_scale}) as NVFP4; a dense one as it is stored, or quantized to NVFP4
     * when the load options ask for it and {@link Nvfp4Recipe} quantizes it. Filled by {@link #finish()}.
     */
    public WeightMatrix matrix(String name, int rows, int cols) {
        return matrix(name, TierPlacement.Role.of(name), rows, cols);
    }

    /** As {@link #matrix(String, int, int)}, with the role in the tier plan the family declares for it. */
    public WeightMatrix matrix(String name, TierPlacement.Role role, int rows, int cols) {
        roles.put(name, role);
        String module = Nvfp4Recipe.module(name);
        if (module != null && checkpoint.contains(module + ".weight_scale")) {
            return nvfp4(name, module, rows, cols);
        }
        WeightMatrix dense = rowMajor(name, rows, cols);
        if (options.quantizeNvfp4() && recipe.quantizes(name) && cols % Nvfp4Format.BLOCK == 0) {
            return quantized(dense);
        }
        return packed(dense);
    }

    private WeightMatrix nvfp4(String name, String module, int rows, int cols) {
        boolean compressedTensors = checkpoint.contains(module + ".weight_packed");
        String codesName = compressedTensors ? module + ".weight_packed" : name;
        if (cols % Nvfp4Format.BLOCK != 0) {
            throw new CheckpointException(CheckpointException.Problem.SHAPE_MISMATCH, checkpoint.directory() + ": NVFP4 module '" + module
                    + "' has " + cols + " input columns; NVFP4 needs a multiple of " + Nvfp4Format.BLOCK);
        }
        TensorView codes = fetch(codesName, rows, cols / 2);
        requireDtype(codes, DType.U8);
        TensorView scales = fetch(module + ".weight_scale", rows, cols / Nvfp4Format.BLOCK);
        requireDtype(scales, DType.F8_E4M3);
        float tensorScale;
        if (compressedTensors) {
            // compressed-tensors stores the divisor 448*6/amax, ModelOpt the multiplier amax/(448*6); the kernels
            // multiply, so the reciprocal is taken once here (it can differ from dividing by an ulp)
            tensorScale = 1f / scalar(module + ".weight_global_scale");
            if (checkpoint.contains(module + ".input_global_scale")) {
                scalar(module + ".input_global_scale"); // W4A4 activation scale: read and checked; W4A16 kernels do not use it
            }
        } else {
            tensorScale = scalar(module + ".weight_scale_2");
            if (checkpoint.contains(module + ".input_scale")) {
                scalar(module + ".input_scale"); // as above
            }
        }
        String purpose = name + " NVFP4 x" + tileRows;
        MemorySegment target = allocate(purpose, WeightFormat.NVFP4.tiledBytes(rows, cols, tileRows));
        allocationScales.put(purpose, tensorScale);
        WeightMatrix m = Nvfp4Format.tiled(name, rows, cols, tensorScale, tileRows, target);
        defer(purpose, List.of(codes.data(), scales.data()), () -> {
            try {
                Nvfp4Format.fill(m, codes.data(), scales.data());
            } catch (IllegalArgumentException e) {
                throw new CheckpointException(CheckpointException.Problem.NON_FINITE, scales.info().file() + ": " + e.getMessage(), e);
            }
        });
        return recorded(m);
    }

    /** A float32 scalar tensor (shape [] or [1]). */
    private float scalar(String name) {
        if (!checkpoint.contains(name)) {
            throw new CheckpointException(CheckpointException.Problem.MISSING_TENSOR, checkpoint.directory() + ": " + family
                    + " needs the NVFP4 scale tensor '" + name + "', which the checkpoint does not have");
        }
        TensorView v = checkpoint.tensor(name);
        if (v.info().elementCount() != 1) {
            throw new CheckpointException(CheckpointException.Problem.SHAPE_MISMATCH, v.info().file() + ": tensor '" + name + "' has shape "
                    + v.info().shapeString() + ", expected a scalar ([] or [1])");
        }
        requireDtype(v, DType.F32);
        used.add(v.info());
        float value = reading(name, () -> v.data().get(FLOAT_LE, 0));
        if (!(value > 0f) || !Float.isFinite(value)) {
            throw new CheckpointException(CheckpointException.Problem.NON_FINITE, v.info().file() + ": tensor '" + name + "' is " + value
                    + "; an NVFP4 scale must be finite and positive");
        }
        return value;
    }

    private void requireDtype(TensorView v, DType dtype) {
        requireDtype(v, dtype, "NVFP4");
    }

    private void requireDtype(TensorView v, DType dtype, String format) {
        if (v.dtype() != dtype) {
            throw new CheckpointException(CheckpointException.Problem.DTYPE_MISMATCH, v.info().file() + ": tensor '" + v.name()
                    + "' has dtype " + v.dtype() + "; " + format + " needs " + dtype);
        }
    }

    /**
     * {@code dense} quantized with the recipe. The shared-input group's amax (and so weight_scale_2) is computed
     * here, once per group: the matrix needs its tensor scale when it is declared.
     */
    private WeightMatrix quantized(WeightMatrix dense) {
        String name = dense.name();
        String purpose = name + " NVFP4 x" + tileRows + " quantized";
        Float scale2 = groupScale2.get(name);
        dev.lockstep.memory.PackedCacheDescriptor.Entry hit = cacheEntries == null ? null : cacheEntries.get(purpose);
        if (scale2 == null && hit != null && hit.tensorScale() > 0f && Float.isFinite(hit.tensorScale())) {
            scale2 = hit.tensorScale(); // the cache holds the quantized bytes and their scale: no amax pass
        }
        if (scale2 == null) {
            float amax = 0f;
            List<String> group = Nvfp4Recipe.sharedInputGroup(name, n -> checkpoint.contains(n) && recipe.quantizes(n));
            for (String member : group) {
                WeightMatrix m = member.equals(name) ? dense : rowMajorUnchecked(member);
                amax = Math.max(amax, reading(member, () -> Nvfp4Quantizer.amax(m)));
                if (m.data().isMapped()) {
                    m.data().unload(); // read again when quantized; meanwhile it need not stay resident
                }
            }
            if (!(amax > 0f) || !Float.isFinite(amax)) {
                throw new CheckpointException(CheckpointException.Problem.NON_FINITE, checkpoint.directory() + ": tensors " + group
                        + " have amax " + amax + "; NVFP4 needs finite, non-zero weights");
            }
            scale2 = Nvfp4Quantizer.weightScale2(amax);
            for (String member : group) {
                groupScale2.put(member, scale2);
            }
        }
        MemorySegment target = allocate(purpose, WeightFormat.NVFP4.tiledBytes(dense.rows(), dense.cols(), tileRows));
        allocationScales.put(purpose, scale2);
        WeightMatrix m = Nvfp4Format.tiled(name, dense.rows(), dense.cols(), scale2, tileRows, target);
        Runnable check = check(dense);
        defer(purpose, List.of(dense.data()), () -> {
            check.run();
            long t0 = System.nanoTime();
            Nvfp4Quantizer.quantizeInto(dense, m);
            quantizeNanos.addAndGet(System.nanoTime() - t0);
        });
        return recorded(m);
    }

    /** A tiled copy of {@code m} for matmul (for tied embeddings: one tensor, two uses). Filled by {@link #finish()}. */
    public WeightMatrix packed(WeightMatrix m) {
        long bytes = WeightMatrix.byteSize(WeightLayout.TILED, m.format(), m.rows(), m.cols(), tileRows);
        String purpose = m.name() + " " + m.format() + " x" + tileRows;
        MemorySegment target = allocate(purpose, bytes);
        WeightMatrix[] packed = new WeightMatrix[1];
        // the packed matrix's shape is known now; its bytes are written by the deferred copy
        packed[0] = DenseFormat.tiledView(m, tileRows, target);
        Runnable check = check(m);
        defer(purpose, List.of(m.data()), () -> {
            check.run();
            m.packTiled(tileRows, target);
        });
        return recorded(packed[0]);
    }

    /** A row-major copy of {@code m} in the arena (lookup tables: nothing then points into the checkpoint). */
    public WeightMatrix copied(WeightMatrix m) {
        String purpose = m.name() + " " + m.format() + " row-major";
        MemorySegment target = allocate(purpose, m.data().byteSize());
        Runnable check = check(m);
        defer(purpose, List.of(m.data()), () -> {
            check.run();
            target.copyFrom(m.data());
        });
        return new WeightMatrix(m.name(), (DenseFormat) m.format(), m.rows(), m.cols(), target);
    }

    private WeightMatrix recorded(WeightMatrix m) {
        matrices.add(m);
        return m;
    }

    /**
     * Queues the copy that fills allocation {@code purpose} from {@code sources} (released once copied); when the
     * packed cache already holds it, queues the check of its checksum instead.
     */
    private void defer(String purpose, List<MemorySegment> sources, Runnable body) {
        if (cached(purpose)) {
            dev.lockstep.memory.PackedCacheDescriptor.Entry e = hits.get(purpose);
            MemorySegment seg = allocations.get(purpose);
            work.add(new Work(purpose, e.bytes(), List.of(), () -> {
                if (dev.lockstep.memory.PackedCacheDescriptor.crc32c(seg) != e.crc32c()) {
                    throw new CorruptCacheException(cacheFile + ": packed-weights cache entry '" + purpose
                            + "' fails its checksum (the file is corrupt); it has been deleted, load again to rebuild it");
                }
            }));
            return;
        }
        long bytes = sources.stream().mapToLong(MemorySegment::byteSize).sum();
        work.add(new Work(purpose, bytes, sources, body));
    }

    /**
     * Runs every deferred copy on all cores (largest first), releasing each checkpoint range once copied.
     * Throws the first failure (a {@link CheckpointException} naming the tensor) after the other copies stop.
     */
    public void finish() {
        for (WeightMatrix m : List.copyOf(unchecked.keySet())) {
            Runnable check = check(m);
            defer(m.name(), List.of(), check);
        }
        long total = work.stream().mapToLong(Work::bytes).sum();
        AtomicLong done = new AtomicLong();
        List<Work> order = new ArrayList<>(work);
        order.sort((a, b) -> Long.compare(b.bytes(), a.bytes()));
        work.clear();
        // A small model is copied on the calling thread: on a fresh JVM the copies take milliseconds, and helper
        // threads would only compete with the tokenizer's load and the JIT compilers for the same cores.
        int threads = total < PARALLEL_MIN_BYTES ? 1 : Math.min(Runtime.getRuntime().availableProcessors(), Math.max(1, order.size()));
        if (threads == 1) {
            try {
                for (Work w : order) {
                    runWork(w, done, total);
                }
            } catch (RuntimeException e) {
                throw dropCorruptCache(e);
            }
            updateCache();
            return;
        }
        RuntimeException failure = null;
        try (ExecutorService pool = Executors.newFixedThreadPool(threads, r -> Thread.ofPlatform().daemon().name("lockstep-load").unstarted(r))) {
            List<Future<?>> futures = new ArrayList<>();
            for (Work w : order) {
                futures.add(pool.submit(() -> runWork(w, done, total)));
            }
            for (Future<?> f : futures) {
                try {
                    if (failure == null) {
                        f.get();
                    } else {
                        f.cancel(false);
                    }
                } catch (java.util.concurrent.ExecutionException e) {
                    failure = e.getCause() instanceof RuntimeException re ? re : new IllegalStateException(e.getCause());
                    if (e.getCause() instanceof Error err) {
                        throw err;
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    failure = new dev.lockstep.memory.LockstepException("interrupted while loading " + checkpoint.directory());
                }
            }
        }
        if (failure != null) {
            throw dropCorruptCache(failure);
        }
        updateCache();
    }

    /** A packed-weights cache entry whose bytes do not match their checksum. */
    private static final class CorruptCacheException extends dev.lockstep.memory.LockstepException {
        CorruptCacheException(String message) {
            super(message);
        }
    }

    /** Deletes the cache file when {@code failure} is its failed checksum (the next load rebuilds it); returns the failure. */
    private RuntimeException dropCorruptCache(RuntimeException failure) {
        if (failure instanceof CorruptCacheException) {
            try {
                java.nio.file.Files.deleteIfExists(cacheFile);
            } catch (java.io.IOException ignored) {
                // the message names the file
            }
        }
        return failure;
    }

    /** After a complete load: report a full cache hit, or write a cache of every allocation when any was packed anew. */
    private void updateCache() {
        if (cacheFile == null) {
            return;
        }
        if (hits.size() == allocations.size()) {
            cacheReport = "mapped " + cacheFile;
            return;
        }
        long bytes = allocations.values().stream().mapToLong(MemorySegment::byteSize).sum();
        try {
            long usable = java.nio.file.Files.getFileStore(java.nio.file.Files.createDirectories(cacheFile.getParent())).getUsableSpace();
            if (usable < 2 * bytes) {
                cacheReport = "not written: " + cacheFile.getParent() + " has " + (usable >> 20) + " MB free, the cache needs " + (bytes >> 20) + " MB";
                return;
            }
            dev.lockstep.memory.PackedCacheDescriptor.write(cacheFile, cacheKey, allocations, allocationScales);
            cacheReport = "wrote " + cacheFile + " (" + (bytes >> 20) + " MB)";
        } catch (java.io.IOException | java.io.UncheckedIOException e) {
            cacheReport = "not written: " + e.getMessage();
        }
    }

    /** Runs one copy, releases its checkpoint ranges, reports progress. */
    private void runWork(Work w, AtomicLong done, long total) {
        reading(w.tensor(), () -> {
            w.body().run();
            return null;
        });
        for (MemorySegment s : w.sources()) {
            if (s.isMapped()) {
                s.unload(); // the copy is made: the checkpoint's pages need not stay resident
            }
        }
        options.progress().update(done.addAndGet(w.bytes()), total);
    }

    /** Below this many bytes to copy, {@link #finish()} runs on the calling thread. */
    static final long PARALLEL_MIN_BYTES = 64L << 20;

    /**
     * Every read of checkpoint bytes goes through here: the JVM reports a fault on a mapped page (SIGBUS: the
     * file shrank under its mapping) as an {@link InternalError}; it becomes a checkpoint error naming the tensor.
     */
    private <T> T reading(String tensor, java.util.function.Supplier<T> read) {
        try {
            return read.get();
        } catch (InternalError e) {
            throw new CheckpointException(CheckpointException.Problem.FILE_CHANGED, checkpoint.directory() + ": reading tensor '"
                    + tensor + "' failed (" + e.getMessage() + "): a checkpoint file was truncated or changed while it was being loaded", e);
        }
    }

    /** Rejects a matrix holding NaN or infinity, naming the tensor and the element (runs with the deferred copy). */
    private WeightMatrix finite(WeightMatrix m, TensorView v) {
        long at = reading(m.name(), m::firstNonFinite);
        if (at >= 0) {
            throw new CheckpointException(CheckpointException.Problem.NON_FINITE,
                    v.info().file() + ": tensor '" + m.name() + "' holds a non-finite value (" + m.get((int) (at / m.cols()), (int) (at % m.cols()))
                            + ") at [" + at / m.cols() + ", " + at % m.cols() + "]: the file is corrupt");
        }
        return m;
    }

    /**
     * A {@code [rows, cols]} matrix in any dense weight format, row-major over the mmapped bytes. Its values are
     * checked for NaN and infinity by the first deferred copy that reads it.
     */
    public WeightMatrix rowMajor(String name, int rows, int cols) {
        TensorView v = fetch(name, rows, cols);
        WeightMatrix m = denseOver(v, rows, cols);
        unchecked.put(m, v);
        return m;
    }

    /** The value check {@code m} still needs, done by whichever copy reads it first (or by {@link #finish()}). */
    private Runnable check(WeightMatrix m) {
        TensorView v = unchecked.remove(m);
        return v == null ? () -> { } : () -> finite(m, v);
    }

    /** A group member read for its amax before the family declares it (checked and recorded when it is). */
    private WeightMatrix rowMajorUnchecked(String name) {
        TensorView v = checkpoint.tensor(name);
        long[] shape = v.info().shape();
        if (shape.length != 2) {
            throw new CheckpointException(CheckpointException.Problem.SHAPE_MISMATCH, v.info().file() + ": tensor '" + name
                    + "' has shape " + v.info().shapeString() + ", expected a matrix");
        }
        return denseOver(v, Math.toIntExact(shape[0]), Math.toIntExact(shape[1]));
    }

    private WeightMatrix denseOver(TensorView v, int rows, int cols) {
        String name = v.name();
        DenseFormat format = WeightFormat.of(v.dtype());
        if (format == null) {
            throw new CheckpointException(CheckpointException.Problem.DTYPE_MISMATCH,
                    v.info().file() + ": tensor '" + name + "' has dtype " + v.dtype() + "; " + family
                            + " weights must be one of F32, BF16, F16, or NVFP4 (U8 codes with an F8_E4M3 weight_scale)");
        }
        return new WeightMatrix(name, format, rows, cols, v.data());
    }

    /** A 1-D tensor (norm weights) decoded to float32 on the heap: small, read on every token. */
    public float[] vector(String name, int n) {
        TensorView v = fetch(name, n);
        DenseFormat format = WeightFormat.of(v.dtype());
        if (format == null) {
            throw new CheckpointException(CheckpointException.Problem.DTYPE_MISMATCH,
                    v.info().file() + ": tensor '" + name + "' has dtype " + v.dtype() + "; " + family
                            + " expects one of F32, BF16, F16");
        }
        float[] out = new float[n];
        vectorElements += n;
        WeightMatrix m = finite(new WeightMatrix(name, format, 1, n, v.data()), v);
        reading(name, () -> {
            m.rowToFloat(0, out, 0);
            return out;
        });
        return out;
    }

    /** Elements of the vectors fetched (norms, biases, sinks): the parameters that are not matrices. */
    public long vectorElements() {
        return vectorElements;
    }

    /** A 1-D tensor if the checkpoint has it, else null (optional biases). */
    public float[] vectorIfPresent(String name, int n) {
        return has(name) ? vector(name, n) : null;
    }

    /** A {@code [rows, cols]} tensor of vectors (per-expert biases) decoded to float32, one array per row. */
    public float[][] vectors(String name, int rows, int cols) {
        TensorView v = fetch(name, rows, cols);
        DenseFormat format = WeightFormat.of(v.dtype());
        if (format == null) {
            throw new CheckpointException(CheckpointException.Problem.DTYPE_MISMATCH,
                    v.info().file() + ": tensor '" + name + "' has dtype " + v.dtype() + "; " + family + " expects one of F32, BF16, F16");
        }
        WeightMatrix m = finite(new WeightMatrix(name, format, rows, cols, v.data()), v);
        float[][] out = new float[rows][cols];
        reading(name, () -> {
            for (int r = 0; r < rows; r++) {
                m.rowToFloat(r, out[r], 0);
            }
            return out;
        });
        vectorElements += (long) rows * cols;
        return out;
    }

    /**
     * How an expert's matrix sits in a 3-D tensor: {@code [experts, out, in]} (Granite, MXFP4 blocks) or transposed
     * {@code [experts, in, out]} (gpt-oss's dense {@code gate_up_proj}/{@code down_proj}).
     */
    public enum ExpertLayout { OUT_IN, IN_OUT }

    /** One matrix of an expert in a fused tensor: output rows {@code first, first + step, ...}, {@code rows} of them. */
    public record Part(String name, int first, int step, int rows) {
    }

    /**
     * Expert {@code expert}'s matrices out of the 3-D tensor {@code name} of {@code experts} experts with
     * {@code outTotal} output rows each, one per part: a fused tensor yields its halves (Granite's
     * {@code input_linear}: parts from row 0 and row inter, step 1) or its interleaved columns (gpt-oss's
     * {@code gate_up_proj}: from 0 and 1, step 2). A contiguous slice of an {@code OUT_IN} tensor is a view of the
     * checkpoint; any other part is copied row-major once (the kernels' packing copies it again). Each is packed, or
     * quantized to NVFP4 when the load options ask for it (an expert is always quantizable: a fused 3-D tensor never
     * stays dense by accident), the parts of one call sharing one {@code weight_scale_2} (amax over all of them, as
     * ModelOpt shares it between an expert's gate and up). A part's name is {@code name[expert].part}.
     */
    public List<WeightMatrix> expertMatrices(String name, ExpertLayout layout, int experts, int outTotal, int in, int expert,
                                             List<Part> parts, TierPlacement.Role role) {
        if (!checkpoint.contains(name) && checkpoint.contains(name + "_blocks")) {
            return mxfp4Experts(name, experts, outTotal, in, expert, parts, role);
        }
        long[] shape = layout == ExpertLayout.OUT_IN ? new long[]{experts, outTotal, in} : new long[]{experts, in, outTotal};
        TensorView v = fetch(name, shape);
        DenseFormat format = WeightFormat.of(v.dtype());
        if (format == null) {
            throw new CheckpointException(CheckpointException.Problem.DTYPE_MISMATCH, v.info().file() + ": tensor '" + name + "' has dtype "
                    + v.dtype() + "; " + family + " expert weights must be one of F32, BF16, F16");
        }
        List<WeightMatrix> dense = new ArrayList<>();
        for (Part p : parts) {
            String matrixName = partName(name, outTotal, expert, p, role);
            WeightMatrix d = expertSlice(v, format, matrixName, layout, outTotal, in, expert, p);
            unchecked.put(d, v);
            dense.add(d);
        }
        boolean quantize = options.quantizeNvfp4() && recipe.quantizesExpert(name) && in % Nvfp4Format.BLOCK == 0;
        if (quantize && !cachedQuantized(dense)) {
            float amax = 0f;
            for (WeightMatrix d : dense) {
                amax = Math.max(amax, reading(d.name(), () -> Nvfp4Quantizer.amax(d)));
            }
            if (!(amax > 0f) || !Float.isFinite(amax)) {
                throw new CheckpointException(CheckpointException.Problem.NON_FINITE, v.info().file() + ": expert " + expert + " of '" + name
                        + "' has amax " + amax + "; NVFP4 needs finite, non-zero weights");
            }
            float scale2 = Nvfp4Quantizer.weightScale2(amax);
            for (WeightMatrix d : dense) {
                groupScale2.put(d.name(), scale2);
            }
        }
        List<WeightMatrix> out = new ArrayList<>();
        for (WeightMatrix d : dense) {
            out.add(quantize ? quantized(d) : packed(d));
        }
        return out;
    }

    /**
     * MXFP4 experts in HF's gpt-oss layout: {@code <name>_blocks} U8 {@code [E, out, in/32, 16]} and
     * {@code <name>_scales} U8 {@code [E, out, in/32]} (rows are output rows whatever the dense layout, so a part's
     * rows are gathered from them directly), packed as {@link WeightFormat#MXFP4} tiles with no dense copy. They stay
     * MXFP4 under {@code --quant nvfp4}: both are 4-bit, and requantizing would only lose precision.
     */
    private List<WeightMatrix> mxfp4Experts(String name, int experts, int outTotal, int in, int expert, List<Part> parts,
                                            TierPlacement.Role role) {
        if (in % Nvfp4Format.MX_BLOCK != 0) {
            throw new CheckpointException(CheckpointException.Problem.SHAPE_MISMATCH, checkpoint.directory() + ": MXFP4 tensor '" + name
                    + "_blocks' has " + in + " input columns; MXFP4 needs a multiple of " + Nvfp4Format.MX_BLOCK);
        }
        int mx = in / Nvfp4Format.MX_BLOCK;
        TensorView blocks = fetch(name + "_blocks", experts, outTotal, mx, 16);
        requireDtype(blocks, DType.U8, "MXFP4");
        TensorView scales = fetch(name + "_scales", experts, outTotal, mx);
        requireDtype(scales, DType.U8, "MXFP4");
        List<WeightMatrix> out = new ArrayList<>();
        for (Part p : parts) {
            String matrixName = partName(name, outTotal, expert, p, role);
            String purpose = matrixName + " MXFP4 x" + tileRows;
            MemorySegment target = allocate(purpose, WeightFormat.MXFP4.tiledBytes(p.rows(), in, tileRows));
            long rowBytes = in / 2, expertRows = (long) expert * outTotal;
            long codeBase = expertRows * rowBytes, scaleBase = expertRows * mx;
            MemorySegment codes = blocks.data(), e8 = scales.data();
            // the part's scale rows now (they set the matrix's tensor scale); its code rows when the copy runs
            MemorySegment rowsScales;
            if (p.step() == 1) {
                rowsScales = e8.asSlice(scaleBase + (long) p.first() * mx, (long) p.rows() * mx);
            } else {
                rowsScales = MemorySegment.ofArray(new byte[p.rows() * mx]);
                for (int r = 0; r < p.rows(); r++) {
                    MemorySegment.copy(e8, scaleBase + (p.first() + (long) p.step() * r) * mx, rowsScales, (long) r * mx, mx);
                }
            }
            MemorySegment partScales = rowsScales;
            WeightMatrix m = reading(name + "_scales", () -> Nvfp4Format.mxfp4Tiled(matrixName, p.rows(), in, partScales, tileRows, target));
            List<MemorySegment> sources = List.of(codes.asSlice(codeBase, (long) outTotal * rowBytes), e8.asSlice(scaleBase, (long) outTotal * mx));
            defer(purpose, sources, () -> {
                MemorySegment rowsCodes;
                if (p.step() == 1) {
                    rowsCodes = codes.asSlice(codeBase + p.first() * rowBytes, p.rows() * rowBytes);
                } else {
                    rowsCodes = MemorySegment.ofArray(new byte[(int) (p.rows() * rowBytes)]);
                    for (int r = 0; r < p.rows(); r++) {
                        MemorySegment.copy(codes, codeBase + (p.first() + (long) p.step() * r) * rowBytes, rowsCodes, r * rowBytes, rowBytes);
                    }
                }
                try {
                    Nvfp4Format.fillMxfp4(m, rowsCodes, partScales);
                } catch (IllegalArgumentException e) {
                    throw new CheckpointException(CheckpointException.Problem.NON_FINITE, scales.info().file() + ": " + e.getMessage(), e);
                }
            });
            out.add(recorded(m));
        }
        return out;
    }

    /**
     * A {@code [rows, cols]} matrix whose element (r, c) is element {@code source.applyAsInt(r, c)} (a flat index) of
     * the 2-D tensor {@code name} of shape {@code [srcRows, srcCols]}: the same values rearranged (MLA's absorbed
     * {@code kv_b_proj}: each head's key rows transposed, its value rows gathered), copied in the checkpoint's dtype
     * and packed for the kernels under the name {@code name[part]}. Kept in its dense format (no NVFP4).
     */
    public WeightMatrix rearranged(String name, int srcRows, int srcCols, String part, int rows, int cols,
                                   java.util.function.IntBinaryOperator source, TierPlacement.Role role) {
        TensorView v = fetch(name, srcRows, srcCols);
        DenseFormat format = WeightFormat.of(v.dtype());
        if (format == null) {
            throw new CheckpointException(CheckpointException.Problem.DTYPE_MISMATCH, v.info().file() + ": tensor '" + name + "' has dtype "
                    + v.dtype() + "; " + family + " expects one of F32, BF16, F16");
        }
        String matrixName = name + "[" + part + "]";
        roles.put(matrixName, role);
        long e = format.bytesPerElement();
        MemorySegment copy = staging.allocate((long) rows * cols * e, 64);
        MemorySegment all = v.data();
        reading(name, () -> {
            for (int r = 0; r < rows; r++) {
                for (int c = 0; c < cols; c++) {
                    MemorySegment.copy(all, source.applyAsInt(r, c) * e, copy, ((long) r * cols + c) * e, e);
                }
            }
            return null;
        });
        WeightMatrix dense = new WeightMatrix(matrixName, format, rows, cols, copy);
        unchecked.put(dense, v);
        return packed(dense);
    }

    /** Checks that part {@code p} lies within {@code outTotal} rows; its matrix name ({@code name[expert].part}), its role recorded. */
    private String partName(String name, int outTotal, int expert, Part p, TierPlacement.Role role) {
        if (p.first() < 0 || p.rows() <= 0 || (long) p.first() + (long) p.step() * (p.rows() - 1) >= outTotal) {
            throw new IllegalArgumentException(name + ": rows " + p.first() + " + " + p.step() + "*i, i < " + p.rows() + " are outside " + outTotal);
        }
        String matrixName = name + "[" + expert + "]" + (p.name() == null ? "" : "." + p.name());
        roles.put(matrixName, role);
        return matrixName;
    }

    /** Whether the packed cache holds every one of {@code dense}, quantized, with its scale (then no amax pass). */
    private boolean cachedQuantized(List<WeightMatrix> dense) {
        if (cacheEntries == null) {
            return false;
        }
        for (WeightMatrix d : dense) {
            dev.lockstep.memory.PackedCacheDescriptor.Entry hit = cacheEntries.get(d.name() + " NVFP4 x" + tileRows + " quantized");
            if (hit == null || !(hit.tensorScale() > 0f)) {
                return false;
            }
        }
        return true;
    }

    private WeightMatrix expertSlice(TensorView v, DenseFormat format, String matrixName, ExpertLayout layout, int outTotal, int in,
                                     int expert, Part p) {
        long elementBytes = format.bytesPerElement();
        long expertBytes = (long) outTotal * in * elementBytes;
        MemorySegment all = v.data();
        int rows = p.rows();
        if (layout == ExpertLayout.OUT_IN && p.step() == 1) {
            return new WeightMatrix(matrixName, format, rows, in, all.asSlice(expert * expertBytes + (long) p.first() * in * elementBytes,
                    (long) rows * in * elementBytes));
        }
        MemorySegment copy = staging.allocate((long) rows * in * elementBytes, 64);
        reading(v.name(), () -> {
            long base = expert * expertBytes;
            for (int r = 0; r < rows; r++) {
                int o = p.first() + p.step() * r;
                if (layout == ExpertLayout.OUT_IN) {
                    MemorySegment.copy(all, base + (long) o * in * elementBytes, copy, (long) r * in * elementBytes, in * elementBytes);
                } else {
                    for (int i = 0; i < in; i++) {
                        MemorySegment.copy(all, base + ((long) i * outTotal + o) * elementBytes, copy, ((long) r * in + i) * elementBytes, elementBytes);
                    }
                }
            }
            return null;
        });
        return new WeightMatrix(matrixName, format, rows, in, copy);
    }

    /** Frees the staging copies of strided or transposed expert matrices (after {@link #finish()}, or on failure). */
    @Override
    public void close() {
        if (staging.scope().isAlive()) {
            staging.close();
        }
    }

    /** Checkpoint tensors not fetched (so far). */
    public List<TensorInfo> unused() {
        Set<String> names = new HashSet<>();
        used.forEach(t -> names.add(t.name()));
        return checkpoint.tensors().stream().filter(t -> !names.contains(t.name())).toList();
    }

    /** Tensors fetched so far, in order. */
    public List<TensorInfo> used() {
        return List.copyOf(used);
    }

    /** The matrices the kernels will multiply, as packed (format, shape, bytes). */
    public List<WeightMatrix> matrices() {
        return List.copyOf(matrices);
    }

    /** Time spent quantizing at load, summed over the loading threads. */
    public long quantizeNanos() {
        return quantizeNanos.get();
    }

    public Checkpoint checkpoint() {
        return checkpoint;
    }
}
