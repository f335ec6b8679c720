/** The public API of Lockstep: engine, sessions, sampling, tokenizer; and the CLI. */
package dev.lockstep.engine;
