import { actor } from "@plexspaces/sdk";

export default actor({
  state: () => ({ count: 0 }),
  handlers: {
    increment(s, { amount = 1 }: { amount?: number }) {
      s.count += amount;
      return { count: s.count };
    },
    get(s) {
      return { count: s.count };
    },
  },
});
