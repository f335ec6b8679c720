package dev.lockstep.moe;

import dev.lockstep.memory.TensorInfo;

import java.util.List;
import java.util.Map;

/**
 * What {@code lockstep inspect} prints: the architecture, its hyper-parameters, parameter counts and every
 * tensor. Active parameters per token follow the usual MoE convention: all parameters except the
 * {@code n_experts - top_k} experts per MoE layer that a token is not routed to (embeddings counted whole).
 * {@code unusedTensors} are in the checkpoint but not read by the family (e.g. the experts of a layer that
 * config.json makes dense); they are mapped but never touched.
 */
public record ModelSummary(String modelType, String architecture, Map<String, Object> hyperParameters,
                           long totalParameters, long activeParametersPerToken, List<TensorInfo> tensors,
                           List<TensorInfo> unusedTensors) {
    public long totalBytes() {
        return tensors.stream().mapToLong(TensorInfo::lengthBytes).sum();
    }
}
