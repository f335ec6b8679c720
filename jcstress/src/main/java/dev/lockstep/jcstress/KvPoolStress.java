package dev.lockstep.jcstress;

import dev.lockstep.memory.KvPagePool;
import dev.lockstep.memory.MemoryTier;
import dev.lockstep.moe.kv.PagedKvCache;
import org.openjdk.jcstress.annotations.Actor;
import org.openjdk.jcstress.annotations.Arbiter;
import org.openjdk.jcstress.annotations.Description;
import org.openjdk.jcstress.annotations.JCStressTest;
import org.openjdk.jcstress.annotations.Outcome;
import org.openjdk.jcstress.annotations.State;
import org.openjdk.jcstress.infra.results.II_Result;
import org.openjdk.jcstress.infra.results.I_Result;
import org.openjdk.jcstress.infra.results.ZZ_Result;

import static org.openjdk.jcstress.annotations.Expect.ACCEPTABLE;
import static org.openjdk.jcstress.annotations.Expect.FORBIDDEN;

/**
 * The KV page pool and page tables under concurrent use: sessions on different threads allocate, share,
 * copy-on-write and release pages of one pool at once. Run: {@code java -jar jcstress/target/jcstress.jar}.
 */
public final class KvPoolStress {
    private KvPoolStress() {
    }

    static KvPagePool pool(int pages) {
        return new KvPagePool(MemoryTier.HBM, 1, 1, 16, pages);
    }

    @JCStressTest
    @Description("Two threads allocating from one pool never get the same page.")
    @Outcome(id = "1, 1", expect = ACCEPTABLE, desc = "distinct pages, each held once")
    @Outcome(expect = FORBIDDEN, desc = "a page handed out twice")
    @State
    public static class AllocateIsExclusive {
        final KvPagePool pool = pool(4);
        int a = -1, b = -2;

        @Actor
        public void first() {
            a = pool.allocate();
        }

        @Actor
        public void second() {
            b = pool.allocate();
        }

        @Arbiter
        public void check(II_Result r) {
            r.r1 = a == b ? 2 : pool.refCount(a);
            r.r2 = a == b ? 2 : pool.refCount(b);
            pool.close();
        }
    }

    @JCStressTest
    @Description("Concurrent retain/release pairs on a shared page keep its count; the page is never freed while held.")
    @Outcome(id = "1", expect = ACCEPTABLE, desc = "back to the one original holder")
    @Outcome(expect = FORBIDDEN, desc = "a lost or doubled reference")
    @State
    public static class RetainReleaseKeepsCount {
        final KvPagePool pool = pool(2);
        final int page = pool.allocate();

        @Actor
        public void first() {
            pool.retain(page);
            pool.release(page);
        }

        @Actor
        public void second() {
            pool.retain(page);
            pool.release(page);
        }

        @Arbiter
        public void check(I_Result r) {
            r.r1 = pool.refCount(page) * (pool.usedPages() == 1 ? 1 : 100);
            pool.close();
        }
    }

    @JCStressTest
    @Description("Two forks of one sequence write into their shared, partly filled page at once: each ends with a page of its own, and closing both frees everything.")
    @Outcome(id = "true, true", expect = ACCEPTABLE, desc = "private pages, nothing leaked")
    @Outcome(expect = FORBIDDEN, desc = "a shared page written by both, or a leak")
    @State
    public static class ForksCopyOnWrite {
        final KvPagePool pool = pool(8);
        final PagedKvCache a;
        final PagedKvCache b;

        public ForksCopyOnWrite() {
            PagedKvCache parent = new PagedKvCache(pool, 64);
            parent.reserve(5);
            parent.commit(5);
            a = parent.fork();
            b = parent.fork();
            parent.close();
        }

        @Actor
        public void first() {
            a.reserve(1);
        }

        @Actor
        public void second() {
            b.reserve(1);
        }

        @Arbiter
        public void check(ZZ_Result r) {
            r.r1 = a.page(0) != b.page(0) && pool.refCount(a.page(0)) == 1 && pool.refCount(b.page(0)) == 1;
            a.close();
            b.close();
            r.r2 = pool.usedPages() == 0;
            pool.close();
        }
    }
}
