package dev.lockstep.verify;

import dev.lockstep.kernels.PanamaKernels;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.lang.classfile.ClassFile;
import java.lang.classfile.ClassModel;
import java.lang.classfile.CodeModel;
import java.lang.classfile.MethodModel;
import java.lang.classfile.instruction.InvokeInstruction;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The shape rule the Vector API kernels depend on (DESIGN.md, PanamaKernels): a method that holds Vector API
 * calls is larger than FreqInlineSize = 325 bytes of bytecode (C2 never inlines it into a caller whose node
 * budget could run out), and no method takes or returns a vector (C2 may refuse to inline even a tiny helper,
 * "already compiled into a big method", and then boxes the vector on every call). Either mistake makes the
 * kernels allocate for the life of the compiled code (measured: 16-64 kB per decode token). Read from the class
 * file, so adding code to a kernel cannot silently break the rule.
 */
class VectorCodeShapeTest {
    static final int FREQ_INLINE_SIZE = 325;

    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(strings = {"PanamaKernels", "Nvfp4VectorKernel"})
    void vectorCodeLivesInNeverInlinedMethodsAndNeverCrossesACall(String kernelClass) throws IOException {
        byte[] bytes;
        try (InputStream in = PanamaKernels.class.getResourceAsStream(kernelClass + ".class")) {
            bytes = in.readAllBytes();
        }
        ClassModel model = ClassFile.of().parse(bytes);
        List<String> violations = new ArrayList<>();
        int vectorMethods = 0;
        for (MethodModel m : model.methods()) {
            CodeModel code = m.code().orElse(null);
            if (code == null) {
                continue;
            }
            // Species queries that return plain numbers (lane count, loop bound, bit size) are not vector code.
            boolean usesVectors = code.elementStream().anyMatch(e -> e instanceof InvokeInstruction i
                    && i.owner().asInternalName().startsWith("jdk/incubator/vector/")
                    && !java.util.Set.of("length", "loopBound", "vectorBitSize", "vectorByteSize", "of", "forBitSize")
                            .contains(i.name().stringValue()));
            String type = m.methodTypeSymbol().descriptorString();
            boolean vectorSignature = type.contains("Ljdk/incubator/vector/");
            int length = ((java.lang.classfile.attribute.CodeAttribute) code).codeLength();
            String name = m.methodName().stringValue() + type;
            if (m.methodName().equalsString("<clinit>")) {
                continue; // runs once, interpreted
            }
            if (usesVectors) {
                vectorMethods++;
                if (length <= FREQ_INLINE_SIZE) {
                    violations.add(name + ": " + length + " bytes of vector code; C2 may inline it (<= " + FREQ_INLINE_SIZE + ")");
                }
            }
            if (vectorSignature) {
                violations.add(name + ": takes or returns a vector (a call that is not inlined boxes it)");
            }
        }
        assertTrue(vectorMethods >= 2, "found the vector methods: " + vectorMethods);
        assertTrue(violations.isEmpty(), String.join("\n", violations));
    }
}
