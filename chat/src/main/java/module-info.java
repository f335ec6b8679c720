/** Chat templates, tool-call and reasoning parsers, conversations over an engine session. */
module dev.lockstep.chat {
    requires transitive dev.lockstep.engine;
    requires jinjava; // an automatic module
    requires org.apache.commons.lang3; // Jinjava's ForTag hands back its loop variables as a commons-lang3 Pair
    requires java.desktop; // javax.el's ELResolver names java.beans.FeatureDescriptor
    requires com.fasterxml.jackson.databind;
    exports dev.lockstep.chat;
}
