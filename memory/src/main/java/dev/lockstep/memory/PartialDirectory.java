package dev.lockstep.memory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * A directory written under a hidden temporary name beside its final place ({@code .NAME.partial-PID}) and renamed
 * into place only when complete, so an interrupted writer (quantize, synth) never leaves a directory that looks
 * like a finished model.
 */
public final class PartialDirectory {
    private PartialDirectory() {
    }

    /** The temporary sibling of {@code out} for this process. */
    public static Path temporaryFor(Path out) {
        return out.toAbsolutePath().getParent().resolve("." + out.getFileName() + ".partial-" + ProcessHandle.current().pid());
    }

    /** Deletes {@code dir} and everything under it, best effort (the directory is hidden and named for its process). */
    public static void deleteQuietly(Path dir) {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(dir)) {
            for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        } catch (IOException ignored) {
            // best effort: what is left is hidden and names its process
        }
    }
}
