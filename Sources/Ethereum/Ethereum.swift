// Ethereum module
