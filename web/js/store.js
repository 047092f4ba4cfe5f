// This origin's IndexedDB: the holder's key pair (the private key non-extractable: the page
// can sign with it, nobody can read it out) and a few settings such as the pinned log key.
// Nothing here is a bearer secret; tokens live in memory only (see auth.js).

const DB = "telegate";
const VERSION = 1;
export const HOLDER = "holder";
export const SETTINGS = "settings";

let opened = null;

function db() {
  opened ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, VERSION);
    req.onupgradeneeded = () => {
      for (const name of [HOLDER, SETTINGS]) {
        if (!req.result.objectStoreNames.contains(name)) req.result.createObjectStore(name);
      }
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error("the key store is blocked by another tab"));
  });
  return opened;
}

async function run(store, mode, action) {
  const tx = (await db()).transaction(store, mode);
  const req = action(tx.objectStore(store));
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("key store transaction aborted"));
  });
}

export const get = (store, key) => run(store, "readonly", (s) => s.get(key));
export const put = (store, key, value) => run(store, "readwrite", (s) => s.put(value, key));
export const remove = (store, key) => run(store, "readwrite", (s) => s.delete(key));
