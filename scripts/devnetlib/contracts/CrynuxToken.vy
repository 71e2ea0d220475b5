#pragma version 0.4.3
# @title Devnet stand-in for the Hydrogen (era B) CNX token
# @notice An ERC20 with the behaviour of OpenZeppelin 4.9's ERC20 (what
#         crynux-contracts@bf05e39 CrynuxToken.sol inherits): "Crynux"/"CNX",
#         18 decimals, the whole supply minted to the deployer; transferFrom
#         spends the allowance first (Approval with the lowered allowance,
#         none for an allowance of 2**256-1), then moves the tokens
#         (Transfer); OZ 4.9's revert texts in OZ's order.
#         Vyper cannot name a parameter `from`: transferFrom's first input
#         and Transfer's first field are `sender` here (names only; the
#         selectors, topics and encodings are the real ones).
#         Devnet additions (owner only): devDistribute, devSetBalance.

event Transfer:
    sender: indexed(address)
    to: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

MAX_BATCH: constant(uint256) = 128
MAX_UINT: constant(uint256) = max_value(uint256)

balances: HashMap[address, uint256]
allowances: HashMap[address, HashMap[address, uint256]]
supply: uint256
devOwner: address


@deploy
def __init__(initialSupply: uint256):
    self.devOwner = msg.sender
    self._mint(msg.sender, initialSupply)


# ---------------------------------------------------------------- ERC20

@view
@external
def name() -> String[32]:
    return "Crynux"


@view
@external
def symbol() -> String[32]:
    return "CNX"


@view
@external
def decimals() -> uint8:
    return 18


@view
@external
def totalSupply() -> uint256:
    return self.supply


@view
@external
def balanceOf(account: address) -> uint256:
    return self.balances[account]


@view
@external
def allowance(owner: address, spender: address) -> uint256:
    return self.allowances[owner][spender]


@external
def transfer(to: address, amount: uint256) -> bool:
    self._transfer(msg.sender, to, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self._approve(msg.sender, spender, amount)
    return True


@external
def transferFrom(sender: address, to: address, amount: uint256) -> bool:
    self._spendAllowance(sender, msg.sender, amount)
    self._transfer(sender, to, amount)
    return True


@external
def increaseAllowance(spender: address, addedValue: uint256) -> bool:
    self._approve(msg.sender, spender, self.allowances[msg.sender][spender] + addedValue)
    return True


@external
def decreaseAllowance(spender: address, subtractedValue: uint256) -> bool:
    current: uint256 = self.allowances[msg.sender][spender]
    assert current >= subtractedValue, "ERC20: decreased allowance below zero"
    self._approve(msg.sender, spender, current - subtractedValue)
    return True


# ---------------------------------------------------------------- internals (OZ 4.9 order)

@internal
def _transfer(sender: address, to: address, amount: uint256):
    assert sender != empty(address), "ERC20: transfer from the zero address"
    assert to != empty(address), "ERC20: transfer to the zero address"
    fromBalance: uint256 = self.balances[sender]
    assert fromBalance >= amount, "ERC20: transfer amount exceeds balance"
    self.balances[sender] = fromBalance - amount
    self.balances[to] += amount
    log Transfer(sender=sender, to=to, value=amount)


@internal
def _mint(account: address, amount: uint256):
    assert account != empty(address), "ERC20: mint to the zero address"
    self.supply += amount
    self.balances[account] += amount
    log Transfer(sender=empty(address), to=account, value=amount)


@internal
def _approve(owner: address, spender: address, amount: uint256):
    assert owner != empty(address), "ERC20: approve from the zero address"
    assert spender != empty(address), "ERC20: approve to the zero address"
    self.allowances[owner][spender] = amount
    log Approval(owner=owner, spender=spender, value=amount)


@internal
def _spendAllowance(owner: address, spender: address, amount: uint256):
    current: uint256 = self.allowances[owner][spender]
    if current != MAX_UINT:
        assert current >= amount, "ERC20: insufficient allowance"
        self._approve(owner, spender, current - amount)


# ---------------------------------------------------------------- devnet (owner only)

@external
def devDistribute(recipients: DynArray[address, MAX_BATCH], amount: uint256):
    # ordinary transfers from the owner's balance (start-up funding)
    assert msg.sender == self.devOwner, "devnet: not the owner"
    for r: address in recipients:
        self._transfer(msg.sender, r, amount)


@external
def devSetBalance(account: address, amount: uint256):
    # mint or drain an account: a transfer from / to the owner, so the
    # supply stays the deployer's initial mint
    assert msg.sender == self.devOwner, "devnet: not the owner"
    current: uint256 = self.balances[account]
    if amount > current:
        self._transfer(msg.sender, account, amount - current)
    elif amount < current:
        self._transfer(account, msg.sender, current - amount)
