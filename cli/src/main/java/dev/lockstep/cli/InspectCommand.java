package dev.lockstep.cli;

import dev.lockstep.kernels.KernelProvider;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.DType;
import dev.lockstep.memory.TensorInfo;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.ModelSummary;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.EnumMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "inspect", mixinStandardHelpOptions = true, description = "Architecture, parameter counts (total / active per token), tensors, dtypes and bytes.")
final class InspectCommand extends LoadingCommand implements Callable<Integer> {
    @Option(names = "--tensors", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "List every tensor (default: ${DEFAULT-VALUE}).")
    boolean listTensors;

    @Override
    public Integer call() {
        try (WorkerPool pool = new WorkerPool(1); CausalLm lm = ModelFamilies.load(ModelFamilies.readConfig(model), KernelProvider.get(), pool, loadOptions())) {
            ModelSummary s = lm.summary();
            out().printf(Locale.ROOT, "model: %s%narchitecture: %s (model_type %s)%n", model, s.architecture(), s.modelType());
            s.hyperParameters().forEach((k, v) -> out().printf(Locale.ROOT, "  %-24s %s%n", k, v));
            out().printf(Locale.ROOT, "parameters: %,d total, %,d active per token (%.1f%%)%n",
                    s.totalParameters(), s.activeParametersPerToken(), 100.0 * s.activeParametersPerToken() / s.totalParameters());
            Map<DType, long[]> byType = new EnumMap<>(DType.class);
            for (TensorInfo t : s.tensors()) {
                long[] acc = byType.computeIfAbsent(t.dtype(), k -> new long[2]);
                acc[0]++;
                acc[1] += t.lengthBytes();
            }
            out().printf(Locale.ROOT, "weights as the kernels run them (%s):%n", KernelProvider.get().name());
            s.matrixBytesByFormat().forEach((f, bytes) -> out().printf(Locale.ROOT, "  %-6s %5d matrices %,14d bytes (%.1f bits/weight)  kernel: %s%n", f,
                    s.matrices().stream().filter(m -> m.format() == f).count(), bytes, f.bitsPerWeight(), KernelProvider.get().matmulKernel(f)));
            if (s.quantizeNanos() > 0) {
                out().printf(Locale.ROOT, "  quantized to NVFP4 at load: %.2f s of CPU time%n", s.quantizeNanos() / 1e9);
            }
            printKv(lm, s);
            TierOptions.print(out(), lm);
            if (lm.executionPlan().isScheduled()) {
                printDecodeSchedule(lm);
            }
            out().printf(Locale.ROOT, "tensors: %d, %,d bytes%n", s.tensors().size(), s.totalBytes());
            byType.forEach((k, v) -> out().printf(Locale.ROOT, "  %-8s %5d tensors %,14d bytes%n", k, v[0], v[1]));
            if (!s.unusedTensors().isEmpty()) {
                out().printf(Locale.ROOT, "unused: %d checkpoint tensors are not read by %s (%,d bytes)%n", s.unusedTensors().size(),
                        s.modelType(), s.unusedTensors().stream().mapToLong(TensorInfo::lengthBytes).sum());
                if (listTensors) {
                    s.unusedTensors().forEach(t -> out().printf(Locale.ROOT, "  unused %-45s %-5s %s%n", t.name(), t.dtype(), t.shapeString()));
                }
            }
            if (listTensors) {
                Map<String, dev.lockstep.memory.MemoryTier> tierOf = new java.util.HashMap<>();
                lm.placement().decisions().forEach(d -> tierOf.put(d.tensor(), d.tier()));
                for (ModelSummary.MatrixInfo m : s.matrices()) {
                    out().printf(Locale.ROOT, "  matrix %-52s %-5s [%d, %d] %,12d bytes  %-4s %s%n", m.name(), m.format(), m.rows(), m.cols(),
                            m.bytes(), tierOf.getOrDefault(m.name(), dev.lockstep.memory.MemoryTier.HBM), KernelProvider.get().matmulKernel(m.format()));
                }
                for (TensorInfo t : s.tensors()) {
                    out().printf(Locale.ROOT, "  %-52s %-5s %-14s %,12d bytes  %s%n", t.name(), t.dtype(), t.shapeString(),
                            t.lengthBytes(), t.file().getFileName());
                }
            }
        }
        return 0;
    }

    /**
     * Under {@code --workers}: compiles the one-token decode step's schedule (two decode steps: the first is
     * recorded, the second runs and verifies the compiled programs) and prints it, one op per line per worker.
     */
    private void printDecodeSchedule(CausalLm lm) {
        try (dev.lockstep.moe.kv.KvCache cache = lm.newKvCache(2)) {
            dev.lockstep.moe.ForwardState state = lm.newState(1);
            float[] logits = new float[lm.vocabSize()];
            int[] token = {0};
            for (int i = 0; i < 2; i++) {
                lm.forward(token, 0, 1, cache, state, logits, dev.lockstep.moe.LogitsMode.LAST, dev.lockstep.moe.ForwardObserver.NONE);
            }
        }
        dev.lockstep.interconnect.schedule.Schedule decode = lm.schedule(1, 1);
        out().printf(Locale.ROOT, "schedule (%s), verified: %s%n", lm.executionPlan(), ScheduleReport.size(lm));
        out().print(decode.listing());
    }

    /** KV bytes per position, per run of layers with one shape (MLA: the latent row, beside what full K/V would take). */
    private void printKv(CausalLm lm, ModelSummary s) {
        dev.lockstep.memory.KvLayout kv = lm.kvLayout();
        out().printf(Locale.ROOT, "KV cache (float32): %,d bytes per position, %,d per page of %d positions%n", kv.bytesPerPosition(),
                kv.pageBytes(), dev.lockstep.memory.KvBlockDescriptor.BLOCK_TOKENS);
        for (int l = 0; l < kv.size(); ) {
            int e = l;
            while (e + 1 < kv.size() && kv.layer(e + 1).equals(kv.layer(l))) {
                e++;
            }
            dev.lockstep.memory.KvLayout.Layer layer = kv.layer(l);
            String full = "";
            Map<String, Object> hp = s.hyperParameters();
            if (layer.isLatent() && hp.get("qk_nope_head_dim") instanceof Integer nope && hp.get("qk_rope_head_dim") instanceof Integer rope
                    && hp.get("v_head_dim") instanceof Integer v && hp.get("num_attention_heads") instanceof Integer heads) {
                full = String.format(Locale.ROOT, " (full K/V would take %,d: %d heads x (%d + %d) x 4)", (long) heads * (nope + rope + v) * 4,
                        heads, nope + rope, v);
            }
            out().printf(Locale.ROOT, "  layer%s %s: %s, %,d bytes per position%s%n", l == e ? "" : "s", l == e ? "" + l : l + "-" + e, layer,
                    layer.bytesPerPosition(), full);
            l = e + 1;
        }
    }
}
