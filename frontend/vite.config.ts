import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import type { Plugin } from "vite";
import { defineConfig } from "vitest/config";

/** Write .gz and .br next to each text asset; WhiteNoise serves them to clients that accept them. */
function precompress(): Plugin {
  return {
    name: "studio-precompress",
    apply: "build",
    closeBundle() {
      const walk = (dir: string): string[] =>
        readdirSync(dir).flatMap((name) => {
          const path = join(dir, name);
          return statSync(path).isDirectory() ? walk(path) : [path];
        });
      for (const file of walk("dist")) {
        if (!/\.(js|css|html|svg|json)$/.test(file)) continue;
        const data = readFileSync(file);
        if (data.length < 1024) continue;
        writeFileSync(`${file}.gz`, gzipSync(data, { level: 9 }));
        writeFileSync(`${file}.br`, brotliCompressSync(data, { params: { [constants.BROTLI_PARAM_QUALITY]: 9 } }));
      }
    },
  };
}

// Django serves the build from frontend/dist under STATIC_URL (/static/); `/` returns dist/index.html.
export default defineConfig({
  base: "/static/",
  plugins: [precompress()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 5000,
    sourcemap: false,
  },
  worker: { format: "es" },
  resolve: {
    // vtk.js (via xmlbuilder2) needs Node's `events`; without the npm package Vite stubs it.
    alias: { events: "events" },
  },
  optimizeDeps: {
    exclude: ["@cornerstonejs/tools"],
    include: [
      "@cornerstonejs/tools > lodash.get",
      "@kitware/vtk.js > fast-deep-equal",
      "@kitware/vtk.js > seedrandom",
      "@kitware/vtk.js > spark-md5",
      "@kitware/vtk.js > utif",
      "@kitware/vtk.js > xmlbuilder2",
      "@kitware/vtk.js > webworker-promise",
    ],
  },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:8000",
      "/accounts": "http://127.0.0.1:8000",
      "/ws": { target: "ws://127.0.0.1:8000", ws: true },
    },
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
  },
});
