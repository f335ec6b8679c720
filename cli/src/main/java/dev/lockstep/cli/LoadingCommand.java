package dev.lockstep.cli;

/**
 * A model command that loads weights for the kernels: the weights' format ({@link QuantOptions}: {@code --quant},
 * the packed-weights cache), their placement ({@link TierOptions}: {@code --sram}, {@code --hbm}) and how forwards run
 * ({@link ExecutionOptions}: {@code --workers}, {@code --placement}).
 */
abstract class LoadingCommand extends ModelCommand {
    @picocli.CommandLine.Mixin
    QuantOptions quantOptions = new QuantOptions();

    @picocli.CommandLine.Mixin
    TierOptions tierOptions = new TierOptions();

    @picocli.CommandLine.Mixin
    ExecutionOptions executionOptions = new ExecutionOptions();

    @Override
    dev.lockstep.moe.LoadOptions loadOptions() {
        return executionOptions.apply(tierOptions.apply(quantOptions.loadOptions(model)), pinWorkers());
    }

    /** Whether schedule workers are pinned to CPUs (bench's {@code --pin}). */
    boolean pinWorkers() {
        return false;
    }
}
