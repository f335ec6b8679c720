package dev.lockstep.cli;

import dev.lockstep.memory.LockstepException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;

/**
 * {@code lockstep <command>}. User errors (bad option, missing or corrupt model, bad config) print one line
 * on stderr and exit 2; {@code --verbose} adds the stack trace. Internal errors exit 1.
 */
@Command(name = "lockstep", mixinStandardHelpOptions = true, version = "lockstep 0.1.0",
        description = "Deterministic Mixture-of-Experts inference on the JVM.",
        subcommands = {GenerateCommand.class, ChatCommand.class, ServeCommand.class, PerplexityCommand.class, InspectCommand.class, PlanCommand.class, BenchCommand.class, QuantizeCommand.class, SynthCommand.class, CommandLine.HelpCommand.class})
public final class LockstepCli {
    public static final int EXIT_USER_ERROR = 2;
    public static final int EXIT_INTERNAL_ERROR = 1;

    public static void main(String[] args) {
        // UTF-8 whatever the locale says: generated text is UTF-8 and must not turn into '?'.
        PrintWriter out = new PrintWriter(new OutputStreamWriter(new FileOutputStream(FileDescriptor.out), StandardCharsets.UTF_8), true);
        PrintWriter err = new PrintWriter(new OutputStreamWriter(new FileOutputStream(FileDescriptor.err), StandardCharsets.UTF_8), true);
        System.exit(run(args, out, err));
    }

    /** Runs the CLI with the given streams; returns the exit code. */
    public static int run(String[] args, PrintWriter out, PrintWriter err) {
        CommandLine cl = new CommandLine(new LockstepCli());
        cl.setOut(out);
        cl.setErr(err);
        cl.setParameterExceptionHandler((ex, a) -> {
            err.println("lockstep: " + ex.getMessage());
            err.println("Try '" + commandPath(ex.getCommandLine()) + " --help' for usage.");
            return EXIT_USER_ERROR;
        });
        cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            boolean verbose = parseResult.hasMatchedOption("--verbose")
                    || (parseResult.subcommand() != null && parseResult.subcommand().hasMatchedOption("--verbose"));
            if (ex instanceof LockstepException || ex instanceof IllegalArgumentException || ex instanceof dev.lockstep.chat.ChatTemplateException) {
                err.println("lockstep: error: " + ex.getMessage());
                if (verbose) {
                    ex.printStackTrace(err);
                }
                return EXIT_USER_ERROR;
            }
            err.println("lockstep: internal error: " + ex);
            if (verbose) {
                ex.printStackTrace(err);
            } else {
                err.println("(run with --verbose for the stack trace)");
            }
            return EXIT_INTERNAL_ERROR;
        });
        int code = cl.execute(args);
        err.flush();
        out.flush();
        return code;
    }

    private static String commandPath(CommandLine cl) {
        String name = cl.getCommandName();
        return name.equals("lockstep") ? "lockstep" : "lockstep " + name;
    }
}
