package dev.lockstep.moe;

import dev.lockstep.kernels.WeightFormat;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.TensorInfo;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What {@code lockstep inspect} prints: the architecture, its hyper-parameters, parameter counts and every
 * tensor. Active parameters per token follow the usual MoE convention: all parameters except the
 * {@code n_experts - top_k} experts per MoE layer that a token is not routed to (embeddings counted whole).
 * {@code unusedTensors} are in the checkpoint but not read by the family (e.g. the experts of a layer that
 * config.json makes dense); they are mapped but never touched. {@code matrices} are the weights as the kernels
 * run them (format, shape, packed bytes); {@code quantizeNanos} is the CPU time spent quantizing at load;
 * {@code packedCache} what the packed-weights cache did ("off", "mapped PATH", "wrote PATH (N MB)", ...).
 */
public record ModelSummary(String modelType, String architecture, Map<String, Object> hyperParameters,
                           long totalParameters, long activeParametersPerToken, List<TensorInfo> tensors,
                           List<TensorInfo> unusedTensors, List<MatrixInfo> matrices, long quantizeNanos, String packedCache) {
    /** One matrix the kernels multiply, as packed. */
    public record MatrixInfo(String name, WeightFormat format, int rows, int cols, long bytes) {
        public static MatrixInfo of(WeightMatrix m) {
            return new MatrixInfo(m.name(), m.format(), m.rows(), m.cols(), m.byteSize());
        }
    }

    public long totalBytes() {
        return tensors.stream().mapToLong(TensorInfo::lengthBytes).sum();
    }

    /** Packed matrix bytes per format, in format order. */
    public Map<WeightFormat, Long> matrixBytesByFormat() {
        Map<WeightFormat, Long> out = new LinkedHashMap<>();
        for (WeightFormat f : WeightFormat.all()) {
            long b = matrices.stream().filter(m -> m.format() == f).mapToLong(MatrixInfo::bytes).sum();
            if (b > 0) {
                out.put(f, b);
            }
        }
        return out;
    }
}
