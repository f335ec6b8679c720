package dev.lockstep.verify;

import dev.lockstep.kernels.KernelProvider;
import org.junit.jupiter.api.Test;

import javax.tools.DiagnosticCollector;
import javax.tools.JavaCompiler;
import javax.tools.JavaFileObject;
import javax.tools.SimpleJavaFileObject;
import javax.tools.ToolProvider;
import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Lockstep as a library: its documentation compiles, and a JVM without the Vector API says so once. */
class LibraryTest {
    static final Path ROOT = Golden.bundledModel().getParent().getParent();

    /** The code of every {@code {@snippet : ...}} in the main sources, with its file's imports. */
    record Snippet(Path file, String imports, String code) {
    }

    static List<Snippet> snippets() throws IOException {
        List<Snippet> out = new ArrayList<>();
        // only the modules' main sources: build output (target/) changes while tests run
        List<Path> sourceRoots;
        try (Stream<Path> modules = Files.list(ROOT)) {
            sourceRoots = modules.map(m -> m.resolve("src/main/java")).filter(Files::isDirectory).sorted().toList();
        }
        List<Path> sources = new ArrayList<>();
        for (Path r : sourceRoots) {
            try (Stream<Path> files = Files.walk(r)) {
                files.filter(p -> p.toString().endsWith(".java")).forEach(sources::add);
            }
        }
        {
            for (Path f : sources) {
                String src = Files.readString(f);
                String imports = src.lines().filter(l -> l.startsWith("import ") || l.startsWith("package "))
                        .map(l -> l.startsWith("package ") ? "import " + l.substring(8, l.length() - 1) + ".*;" : l)
                        .reduce("", (a, b) -> a + b + "\n");
                List<String> lines = src.lines().toList();
                for (int i = 0; i < lines.size(); i++) {
                    if (!lines.get(i).contains("{@snippet :")) {
                        continue;
                    }
                    // The snippet ends at the '}' that closes its opening brace: count braces line by line.
                    StringBuilder code = new StringBuilder();
                    int depth = 0;
                    for (int j = i + 1; j < lines.size(); j++) {
                        String line = lines.get(j).replaceFirst("^\\s*\\* ?", "");
                        if (depth == 0 && line.strip().equals("}")) {
                            break;
                        }
                        depth += line.chars().filter(c -> c == '{').count() - line.chars().filter(c -> c == '}').count();
                        code.append(line).append('\n');
                    }
                    out.add(new Snippet(f, imports, code.toString()));
                }
            }
        }
        return out;
    }

    @Test
    void javadocSnippetsCompile() throws IOException {
        List<Snippet> all = snippets();
        assertFalse(all.isEmpty(), "Engine's Javadoc has a snippet");
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        Path out = Files.createTempDirectory("snippets");
        int i = 0;
        for (Snippet s : all) {
            String name = "Snippet" + i++;
            String source = s.imports() + "import java.nio.file.*;\nclass " + name + " {\n static void example() throws Exception {\n"
                    + s.code() + "\n }\n}\n";
            JavaFileObject file = new SimpleJavaFileObject(URI.create("string:///" + name + ".java"), JavaFileObject.Kind.SOURCE) {
                @Override
                public CharSequence getCharContent(boolean ignoreEncodingErrors) {
                    return source;
                }
            };
            DiagnosticCollector<JavaFileObject> diagnostics = new DiagnosticCollector<>();
            boolean ok = javac.getTask(null, null, diagnostics, List.of("-d", out.toString(), "-proc:none",
                    "--add-modules", "jdk.incubator.vector", "-cp", System.getProperty("java.class.path")), null, List.of(file)).call();
            assertTrue(ok, s.file() + ": snippet does not compile: " + diagnostics.getDiagnostics() + "\n" + source);
        }
    }

    @Test
    void readmeJavaSnippetIsTheExampleProject() throws IOException {
        String readme = Files.readString(ROOT.resolve("README.md"));
        Matcher m = Pattern.compile("```java\\n(.*?)```", Pattern.DOTALL).matcher(readme);
        assertTrue(m.find(), "README has a Java snippet");
        String example = Files.readString(ROOT.resolve("examples/embedding/src/main/java/dev/lockstep/examples/Generate.java"));
        String region = example.substring(example.indexOf("// README:begin\n") + 16, example.indexOf("        // README:end"));
        String dedented = region.lines().map(l -> l.length() >= 8 ? l.substring(8) : l.strip()).reduce("", (a, b) -> a + b + "\n");
        assertEquals(dedented, m.group(1), "README's Java snippet = examples/embedding Generate.java between the README markers");
    }

    @Test
    void withoutTheVectorModuleOneWarningNamesTheFlag() throws Exception {
        String java = ProcessHandle.current().info().command().orElseThrow();
        Process p = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), KernelChoice.class.getName())
                .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("kernels=scalar"), out);
        assertTrue(out.contains("--add-modules jdk.incubator.vector") && out.contains("slower"), out);
        assertEquals(1, out.split("Vector API \\(module jdk.incubator.vector\\) is not", -1).length - 1, "exactly one warning: " + out);
    }

    /** Run in a child JVM without --add-modules: picks the kernels twice, prints the choice. */
    public static final class KernelChoice {
        public static void main(String[] args) {
            KernelProvider.get();
            System.out.println("kernels=" + KernelProvider.get().name());
        }
    }
}
