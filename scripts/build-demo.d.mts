// Types of scripts/build-demo.mjs (imported by the browser tests).
export declare const demoOutDir: string;
export declare function buildDemo(): Promise<void>;
export declare function buildDemoIfStale(): Promise<boolean>;
