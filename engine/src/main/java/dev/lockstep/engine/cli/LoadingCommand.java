package dev.lockstep.engine.cli;

/**
 * A model command that loads weights for the kernels: the weights' format ({@link QuantOptions}: {@code --quant},
 * the packed-weights cache) and their placement ({@link TierOptions}: {@code --sram}, {@code --hbm}).
 */
abstract class LoadingCommand extends ModelCommand {
    @picocli.CommandLine.Mixin
    QuantOptions quantOptions = new QuantOptions();

    @picocli.CommandLine.Mixin
    TierOptions tierOptions = new TierOptions();

    @Override
    dev.lockstep.moe.LoadOptions loadOptions() {
        return tierOptions.apply(quantOptions.loadOptions(model));
    }
}
